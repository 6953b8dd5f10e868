import json
from io import StringIO

import pytest
from django.core.management import call_command

from scheduling.caseload.models import Patient


@pytest.mark.django_db
def test_the_benchmark_prints_json_ratios_for_each_size_and_leaves_nothing_behind():
    out = StringIO()
    call_command(
        "bench_call_list", patients=[3, 6], attempts=3, repeat=2, runs=2, stdout=out, stderr=StringIO()
    )
    report = json.loads(out.getvalue())
    assert report["rolled_back"] is True
    assert [size["patients"] for size in report["sizes"]] == [3, 6]
    for size in report["sizes"]:
        assert len(size["runs"]) == 2
        for run in size["runs"]:
            for page in ("minimal_page", "call_list"):
                spread = run[page]["ms"]
                assert 0 < spread["min"] <= spread["median"] <= spread["max"]
                assert run[page]["queries"] > 0
            assert run["ratio_min"] > 0 and run["ratio_median"] > 0
            assert run["call_list"]["rows"] >= size["patients"]
        assert size["ratio_median"]["min"] <= size["ratio_median"]["median"] <= size["ratio_median"]["max"]
    assert not Patient.objects.exists()
