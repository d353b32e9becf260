// Package chart draws the admin page's charts as inline SVG on the server
// (SPEC §9 round 2): no script, nothing from another host, and readable
// without colour — every chart has a title and a description for screen
// readers, every bar its number as text and a tooltip, and the caller shows
// the same figures as a table beside it.
package chart

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"unicode/utf8"
)

// Geometry shared by the charts, in CSS pixels: a chart is drawn at the
// size it is shown (its width and height are set, so it is never stretched
// and its text stays the page's 12 px; a narrower window only scales it
// down). The columns chart takes the page's width at 1280 px, the bar
// charts half of it (they sit two to a row).
const (
	width     = 1100 // the columns chart (full width)
	barsWidth = 480  // the bar charts (half width)
	minLabelW = 80   // the row labels on the left, at least
	maxLabelW = 220  // and at most (a longer label is cut with an ellipsis)
	charW     = 7    // about one character of 12 px text
	rowH      = 26
	barGap    = 2
	titleH    = 24 // the visible title
	topPad    = 8
	axisH     = 22
	valueRoom = 90 // room for a bar's number on its right
)

// svg writes the frame: role img, named by its title and described by its
// description (the accessible name and text a screen reader reads), with
// the title also written visibly at the top.
func svg(id, title, desc string, w, height int, body string) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="%s" role="img" viewBox="0 0 %d %d" width="%d" height="%d" aria-labelledby="%s-title %s-desc" xmlns="http://www.w3.org/2000/svg">`,
		esc(id), w, height+titleH, w, height+titleH, esc(id), esc(id))
	fmt.Fprintf(&b, `<title id="%s-title">%s</title><desc id="%s-desc">%s</desc>`, esc(id), esc(title), esc(id), esc(desc))
	fmt.Fprintf(&b, `<text class="title" x="0" y="16" aria-hidden="true">%s</text><g transform="translate(0 %d)">`, esc(title), titleH)
	b.WriteString(body)
	b.WriteString(`</g></svg>`)
	return template.HTML(b.String()) //nolint:gosec // every text in it passed through esc
}

// esc escapes text for XML content and attribute values.
func esc(s string) string { return template.HTMLEscapeString(s) }

// labelWidth is the room for the longest of labels (plus a gap), within
// [minLabelW, maxLabelW]; cut shortens a label to fit it.
func labelWidth(labels []string, extra int) int {
	longest := 0
	for _, l := range labels {
		longest = max(longest, utf8.RuneCountInString(l))
	}
	return min(max(longest*charW+extra+10, minLabelW), maxLabelW)
}

func cut(label string, room int) string {
	r := []rune(label)
	if fit := room / charW; len(r) > fit && fit > 1 {
		return string(r[:fit-1]) + "…"
	}
	return label
}

// The series of a columns chart are told apart by colour and by pattern
// (for readers who cannot tell the colours apart, and in print): eight
// colours of the Okabe–Ito palette, each with its own fill pattern; past
// eight series the pattern shifts, so no two of the first 64 share both.
var seriesColours = [8]string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8F7A00", "#5B6570"}

// seriesMarks are the patterns' marks on an 8×8 tile, drawn over the colour.
var seriesMarks = [8]string{
	``, // solid
	`<path d="M0 8L8 0M-2 2L2 -2M6 10L10 6" stroke="#fff" stroke-width="1.6"/>`, // diagonal
	`<circle cx="4" cy="4" r="1.6" fill="#fff"/>`,                               // dots
	`<path d="M0 4H8" stroke="#fff" stroke-width="1.6"/>`,                       // horizontal
	`<path d="M4 0V8" stroke="#fff" stroke-width="1.6"/>`,                       // vertical
	`<path d="M0 0L8 8M-2 6L2 10M6 -2L10 2" stroke="#fff" stroke-width="1.6"/>`, // back diagonal
	`<path d="M0 4H8M4 0V8" stroke="#fff" stroke-width="1.2"/>`,                 // grid
	`<path d="M0 8L8 0M0 0L8 8" stroke="#fff" stroke-width="1.1"/>`,             // cross
}

// seriesStyle is series i's colour and pattern index.
func seriesStyle(i int) (colour string, mark int) {
	return seriesColours[i%8], (i + i/8) % 8
}

// seriesDefs writes one pattern per series, named <id>-p<i>.
func seriesDefs(id string, n int) string {
	var b strings.Builder
	b.WriteString(`<defs>`)
	for i := range n {
		colour, mark := seriesStyle(i)
		fmt.Fprintf(&b, `<pattern id="%s-p%d" width="8" height="8" patternUnits="userSpaceOnUse"><rect width="8" height="8" fill="%s"/>%s</pattern>`,
			esc(id), i, colour, seriesMarks[mark])
	}
	b.WriteString(`</defs>`)
	return b.String()
}

// Series is one labelled row of values (e.g. one source's events per hour).
type Series struct {
	Label  string
	Values []int
}

// Columns draws small multiples: one row per series, a bar per slot, every
// row on the same scale, slot labels under the last row (every step-th).
// tip names a bar for its tooltip: tip(series, slot, value).
func Columns(id, title, desc string, series []Series, slotLabels []string, step int, tip func(s, slot, v int) string) template.HTML {
	slots := len(slotLabels)
	peak := 1
	for _, s := range series {
		for _, v := range s.Values {
			peak = max(peak, v)
		}
	}
	labels := make([]string, len(series))
	for i, s := range series {
		labels[i] = s.Label
	}
	const swatch = 16 // a square of the series' pattern before its label
	labelW := labelWidth(labels, swatch)
	plotW := width - labelW - valueRoom
	colW := float64(plotW) / float64(max(slots, 1))
	var b strings.Builder
	b.WriteString(seriesDefs(id, len(series)))
	for i, s := range series {
		y := topPad + i*rowH
		total := 0
		for _, v := range s.Values {
			total += v
		}
		fmt.Fprintf(&b, `<rect class="swatch" x="0" y="%d" width="12" height="12" fill="url(#%s-p%d)"/>`, y+rowH/2-6, esc(id), i)
		fmt.Fprintf(&b, `<text class="label" x="%d" y="%d">%s<title>%s</title></text>`, swatch, y+rowH/2+4,
			esc(cut(s.Label, labelW-swatch-10)), esc(s.Label))
		fmt.Fprintf(&b, `<line class="base" x1="%d" x2="%d" y1="%d" y2="%d"/>`, labelW, labelW+plotW, y+rowH-barGap, y+rowH-barGap)
		for slot, v := range s.Values {
			if slot >= slots {
				break
			}
			h := 0.0
			if v > 0 {
				h = math.Max(1.5, float64(rowH-2*barGap)*float64(v)/float64(peak))
			}
			x := float64(labelW) + float64(slot)*colW
			fmt.Fprintf(&b, `<rect class="bar series" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="url(#%s-p%d)"><title>%s</title></rect>`,
				x+0.5, float64(y+rowH-barGap)-h, math.Max(colW-1, 1), h, esc(id), i, esc(tip(i, slot, v)))
		}
		fmt.Fprintf(&b, `<text class="value" x="%d" y="%d">%s</text>`, labelW+plotW+8, y+rowH/2+4, esc(Count(total)))
	}
	y := topPad + len(series)*rowH + 14
	for slot := 0; slot < slots; slot += max(step, 1) {
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d">%s</text>`, float64(labelW)+float64(slot)*colW, y, esc(slotLabels[slot]))
	}
	return svg(id, title, desc, width, topPad+len(series)*rowH+axisH, b.String())
}

// Bar is one labelled horizontal bar. Text is what is written at its end
// (the number, with its unit); Length is its length on the chart's scale
// (every bar of one chart shares it: the caller puts values of one kind on
// one scale, e.g. durations through one log function).
type Bar struct {
	Label  string
	Length float64
	Text   string
	Class  string // a CSS class for its fill (the text carries the meaning)
}

// Tick is one mark of a bar chart's axis, at a Length.
type Tick struct {
	At    float64
	Label string
}

// Bars draws labelled horizontal bars on one scale, with the axis ticks
// given (none: no axis). The scale runs from 0 to the largest of the bars
// and ticks.
func Bars(id, title, desc string, bars []Bar, axis []Tick) template.HTML {
	peak := 0.0
	for _, bar := range bars {
		peak = math.Max(peak, bar.Length)
	}
	for _, t := range axis {
		peak = math.Max(peak, t.At)
	}
	if peak == 0 {
		peak = 1
	}
	labels := make([]string, len(bars))
	for i, bar := range bars {
		labels[i] = bar.Label
	}
	labelW := labelWidth(labels, 0)
	plotW := barsWidth - labelW - valueRoom
	x := func(l float64) float64 { return float64(labelW) + float64(plotW)*l/peak }
	var b strings.Builder
	for i, bar := range bars {
		y := topPad + i*rowH
		w := x(bar.Length) - float64(labelW)
		if bar.Length > 0 {
			w = math.Max(w, 2)
		}
		fmt.Fprintf(&b, `<text class="label" x="0" y="%d">%s<title>%s</title></text>`, y+rowH/2+4, esc(cut(bar.Label, labelW-10)), esc(bar.Label))
		fmt.Fprintf(&b, `<rect class="bar %s" x="%d" y="%d" width="%.1f" height="%d"><title>%s: %s</title></rect>`,
			esc(bar.Class), labelW, y+barGap*2, w, rowH-barGap*4, esc(bar.Label), esc(bar.Text))
		fmt.Fprintf(&b, `<text class="value" x="%.1f" y="%d">%s</text>`, float64(labelW)+w+6, y+rowH/2+4, esc(bar.Text))
	}
	height := topPad + len(bars)*rowH + topPad
	if len(axis) > 0 {
		y := topPad + len(bars)*rowH
		fmt.Fprintf(&b, `<line class="base" x1="%d" x2="%d" y1="%d" y2="%d"/>`, labelW, labelW+plotW, y, y)
		for _, t := range axis {
			fmt.Fprintf(&b, `<line class="base" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>`, x(t.At), x(t.At), y, y+4)
			fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x(t.At), y+16, esc(t.Label))
		}
		height = y + axisH
	}
	return svg(id, title, desc, barsWidth, height, b.String())
}

// Count writes a count compactly: 999, 1.2k, 34k, 1.5M.
func Count(n int) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%.0fM", float64(n)/1e6)
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	case n >= 1_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
