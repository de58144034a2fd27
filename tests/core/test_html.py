"""The one report page template."""

from modelfoundry.core.html import page


def test_page_escapes_its_title_and_heading_and_keeps_the_body():
    doc = page("<script>x</script> report", "a & b", "<p>kept</p>", subtitle="<i>run</i>")
    assert "<script>x" not in doc and "&lt;script&gt;x&lt;/script&gt; report</title>" in doc
    assert "<h1>a &amp; b <small>&lt;i&gt;run&lt;/i&gt;</small></h1>" in doc and "<p>kept</p>" in doc
    assert "text-align:right" in doc and "max-width:1000px" in doc


def test_page_options_change_the_style():
    doc = page("t", "t", "", width=1100, align="", compact=True, wrap=True)
    assert "max-width:1100px" in doc and "text-align" not in doc and "font-size:90%" in doc
    assert "white-space:pre-wrap" in doc and "padding:3px 7px" in doc
