from io import StringIO

import pytest
from django.core.management import call_command

from scheduling.caseload.models import Patient


@pytest.mark.django_db
def test_the_benchmark_prints_a_ratio_and_leaves_nothing_behind():
    out = StringIO()
    call_command("bench_call_list", patients=4, attempts=3, repeat=1, stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "ratio call list / minimal page:" in text and "Benchmark data rolled back." in text
    assert not Patient.objects.exists()
