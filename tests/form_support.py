"""Reads an admin page's form as a browser would and sends it back: what a user's unchanged Save posts."""

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    def __init__(self, form_id):
        super().__init__(convert_charrefs=True)
        self.form_id, self.inside, self.fields = form_id, False, []
        self.select, self.select_multiple, self.options, self.textarea = None, False, [], None
        self.option = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (self.form_id is None or attrs.get("id") == self.form_id):
            self.inside = True
        if not self.inside or "disabled" in attrs:
            return
        if tag == "input":
            kind = attrs.get("type", "text")
            name = attrs.get("name")
            if not name or kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            self.fields.append((name, attrs.get("value", "on" if kind in ("checkbox", "radio") else "")))
        elif tag == "select":
            self.select, self.select_multiple, self.options = attrs.get("name"), "multiple" in attrs, []
        elif tag == "option" and self.select:
            self.option = [attrs.get("value"), "selected" in attrs, ""]
            self.options.append(self.option)
        elif tag == "textarea":
            self.textarea = [attrs.get("name"), ""]

    def handle_data(self, data):
        if self.textarea is not None:
            self.textarea[1] += data
        elif self.option is not None:
            self.option[2] += data

    def handle_endtag(self, tag):
        if tag == "form" and self.inside:
            self.inside = False
        elif tag == "option":
            self.option = None
        elif tag == "select" and self.select:
            chosen = [o for o in self.options if o[1]]
            if not chosen and not self.select_multiple and self.options:
                chosen = [self.options[0]]
            for value, _, text in chosen:
                self.fields.append((self.select, value if value is not None else text))
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            name, text = self.textarea
            # A browser drops the one line break after <textarea>.
            if text.startswith("\r\n"):
                text = text[2:]
            elif text.startswith("\n"):
                text = text[1:]
            if name:
                self.fields.append((name, text))
            self.textarea = None


def form_fields(html: str, form_id: str | None = None) -> dict:
    reader = _FormReader(form_id)
    reader.feed(html)
    data = {}
    for name, value in reader.fields:
        data.setdefault(name, []).append(value)
    return {name: values if len(values) > 1 else values[0] for name, values in data.items()}


def saved_unchanged(client, url, form_id=None, **changes):
    """GET the page, POST its form back as a browser's Save would, with `changes` typed in."""
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    data = form_fields(page.content.decode(), form_id)
    data.update(changes)
    data["_save"] = "Save"
    return client.post(url, data)


def pair_decision(pair, decision: str, note: str = "") -> dict:
    """What a duplicate pair's page posts to decide it, opened now: with the decision it was opened
    at (`decision_read`), as read from the database."""
    opened = type(pair).objects.get(pk=pair.pk)
    return {"decision": decision, "note": note, "decision_read": opened.decision_read}
