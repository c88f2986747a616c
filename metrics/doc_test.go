package metrics

import (
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
)

var update = flag.Bool("update", false, "rewrite the metrics table of docs/metrics.md from metrics/defs.go")

const (
	docFile    = "../docs/metrics.md"
	tableBegin = "<!-- BEGIN METRICS TABLE"
	tableEnd   = "<!-- END METRICS TABLE -->"
)

// metricsTable renders the reference table from the definitions.
func metricsTable() string {
	var b strings.Builder
	b.WriteString("| Metric | Type | Labels | Meaning |\n|--------|------|--------|---------|\n")
	for _, d := range allDefs() {
		labels := "—"
		if len(d.labels) > 0 {
			labels = "`" + strings.Join(d.labels, "`, `") + "`"
		}
		b.WriteString("| `" + d.name + "` | " + d.kind + " | " + labels + " | " + strings.ReplaceAll(d.help, "|", `\|`) + " |\n")
	}
	return b.String()
}

// TestMetricsDoc checks docs/metrics.md: its table is the one the
// definitions make (-update rewrites it), and it lists exactly the
// moqbridge_ families the registry exposes, with their types and labels,
// once every family has a series.
func TestMetricsDoc(t *testing.T) {
	raw, err := os.ReadFile(docFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	begin := strings.Index(doc, tableBegin)
	end := strings.Index(doc, tableEnd)
	if begin < 0 || end < begin {
		t.Fatalf("%s: no %q … %q section", docFile, tableBegin, tableEnd)
	}
	begin += strings.Index(doc[begin:], "\n") + 1
	if table := metricsTable(); doc[begin:end] != table {
		if *update {
			doc = doc[:begin] + table + doc[end:]
			if err := os.WriteFile(docFile, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			t.Errorf("%s: the metrics table differs from metrics/defs.go; run go test ./metrics -run TestMetricsDoc -update", docFile)
		}
	}

	documented := documentedFamilies(t, doc)
	exposed := exposedFamilies(t)
	for name, d := range exposed {
		if dd, ok := documented[name]; !ok {
			t.Errorf("%s (%s) is exposed but not in %s", name, d, docFile)
		} else if dd != d {
			t.Errorf("%s: documented as %s, exposed as %s", name, dd, d)
		}
	}
	for name := range documented {
		if _, ok := exposed[name]; !ok {
			t.Errorf("%s is in %s but not exposed", name, docFile)
		}
	}
}

// documentedFamilies returns the type and labels ("counter pipeline,path")
// of every metric in the document's tables, by name.
func documentedFamilies(t *testing.T, doc string) map[string]string {
	t.Helper()
	row := regexp.MustCompile("(?m)^\\| `(moqbridge_[a-z_]+)` \\| (counter|gauge|histogram) \\| ([^|]*) \\|")
	out := make(map[string]string)
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		var labels []string
		for l := range strings.SplitSeq(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" && l != "—" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		out[m[1]] = m[2] + " " + strings.Join(labels, ",")
	}
	if len(out) == 0 {
		t.Fatalf("%s: no metric rows", docFile)
	}
	return out
}

// exposedFamilies gives every family a series through the Observer and
// SetRelay, gathers the registry and returns the type and labels of each
// moqbridge_ family, by name.
func exposedFamilies(t *testing.T) map[string]string {
	t.Helper()
	m := New()
	stats := func() map[string]sdk.TrackStats { return map[string]sdk.TrackStats{"video": {Frames: 1}} }
	m.SourceUp("p", true)
	m.Restarted("p", "source")
	m.BroadcastStarted("p", "live/a", stats, func() pipelines.SourceCounters { return pipelines.SourceCounters{InputPackets: 1} })
	m.SinkStarted("p", "sinks[0].fmp4", "live/a", stats, func() pipelines.SinkCounters { return pipelines.SinkCounters{} })
	m.Latency("p", "live/a", "video", time.Millisecond)
	m.SetRelay(func() protocol.ServerStats {
		return protocol.ServerStats{SessionsActive: protocol.TransportCounts{QUIC: 1}, SessionsAccepted: protocol.TransportCounts{QUIC: 1}}
	})
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "moqbridge_") {
			continue
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
		labels := make(map[string]bool)
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		var names []string
		for l := range labels {
			names = append(names, l)
		}
		slices.Sort(names)
		out[name] = strings.ToLower(f.GetType().String()) + " " + strings.Join(names, ",")
	}
	return out
}
