from django import forms


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text"}),
    )


class TokenForm(forms.Form):
    name = forms.CharField(label="What is it for?", max_length=100, help_text="For example “nightly sync”.")
