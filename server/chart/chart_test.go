package chart

import (
	"encoding/xml"
	"strings"
	"testing"
)

// The charts are well-formed SVG whatever their text holds, named for
// screen readers, and carry each number as text.
func TestCharts_AreWellFormedNamedAndLabelled(t *testing.T) {
	hostile := `<script>alert("x")</script> & 'quotes'`
	for name, out := range map[string]string{
		"columns": string(Columns("c1", hostile, hostile, []Series{{Label: hostile, Values: []int{0, 3, 1200}}}, []string{"00:00", "01:00", "02:00"}, 1,
			func(s, slot, v int) string { return hostile })),
		"bars": string(Bars("b1", "Outcomes", "desc", []Bar{{Label: hostile, Length: 5, Text: "5", Class: "o-x"}, {Label: "none", Length: 0, Text: "0"}},
			[]Tick{{0, "0"}, {10, hostile}})),
		"empty": string(Bars("b2", "Nothing", "no data", nil, nil)),
	} {
		if strings.Contains(out, "<script") {
			t.Errorf("%s: unescaped text", name)
		}
		var doc struct {
			Role     string   `xml:"role,attr"`
			Labelled string   `xml:"aria-labelledby,attr"`
			Title    string   `xml:"title"`
			Shown    string   `xml:"text"` // the visible title
			Texts    []string `xml:"g>text"`
		}
		if err := xml.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%s: not XML: %v\n%s", name, err, out)
		}
		if doc.Role != "img" || doc.Title == "" || doc.Shown != doc.Title || !strings.HasSuffix(doc.Labelled, "-desc") {
			t.Errorf("%s: role %q title %q labelledby %q", name, doc.Role, doc.Title, doc.Labelled)
		}
		if name == "columns" && !strings.Contains(strings.Join(doc.Texts, "|"), "1.2k") {
			t.Errorf("columns: the row total is not written: %v", doc.Texts)
		}
		if name == "bars" && !strings.Contains(strings.Join(doc.Texts, "|"), "|5|") {
			t.Errorf("bars: the value is not written: %v", doc.Texts)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1200: "1.2k", 34_000: "34k", 1_500_000: "1.5M", 12_000_000: "12M"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}
