from django import forms


class ResolveTaskForm(forms.Form):
    resolution = forms.CharField(label="What was done", max_length=200)
