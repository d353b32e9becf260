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

// A chart is drawn at the size it is shown (width and height set, so the
// page never stretches its text), with room for its longest label (a
// longer one is cut, whole in its tooltip); the series of a columns chart
// differ by colour and pattern.
func TestCharts_DrawnAtTheirSizeWithRoomForLabelsAndDistinctSeries(t *testing.T) {
	long := strings.Repeat("a-very-long-team-name/", 4)
	out := string(Bars("b", "t", "d", []Bar{{Label: "acme/platform-sre helpful", Length: 3, Text: "3"}, {Label: long, Length: 1, Text: "1"}}, nil))
	if !strings.Contains(out, `viewBox="0 0 480 `) || !strings.Contains(out, `width="480"`) || strings.Contains(out, `width="100%"`) {
		t.Fatalf("the bar chart's size: %.200s", out)
	}
	if !strings.Contains(out, ">acme/platform-sre helpful<title>") || !strings.Contains(out, "…<title>"+long+"</title>") {
		t.Errorf("labels: %s", out)
	}
	// The bars start after the longest label's room, not over it.
	if !strings.Contains(out, `<rect class="bar " x="220"`) {
		t.Errorf("a cut label's chart keeps its bars at the widest label room: %s", out)
	}
	var series []Series
	for i := range 10 {
		series = append(series, Series{Label: string(rune('a' + i)), Values: []int{1}})
	}
	cols := string(Columns("c", "t", "d", series, []string{"00"}, 1, func(s, slot, v int) string { return "x" }))
	seen := map[string]bool{}
	for i := range 10 {
		colour, mark := seriesStyle(i)
		key := colour + string(rune('0'+mark))
		if seen[key] {
			t.Errorf("series %d repeats a colour and pattern", i)
		}
		seen[key] = true
		if !strings.Contains(cols, `fill="url(#c-p`+string(rune('0'+i))) {
			t.Errorf("series %d is not filled with its pattern", i)
		}
	}
	if strings.Count(cols, "<pattern ") != 10 {
		t.Errorf("%d patterns for 10 series", strings.Count(cols, "<pattern "))
	}
}
