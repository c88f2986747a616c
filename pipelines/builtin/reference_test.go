package builtin

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
)

// TestReferenceDocumented: testdata/reference.md, the config reference of
// the built-in kinds, names every option of every kind and no option the
// kinds lack, and the defaults it gives are the ones Options sets.
func TestReferenceDocumented(t *testing.T) {
	raw, err := os.ReadFile("testdata/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	reg := Registry()
	var keys []string
	for _, k := range pipelines.ReferenceKeys(reg) {
		if strings.HasPrefix(k, "pipelines.NAME.source.") || strings.HasPrefix(k, "pipelines.NAME.sinks[].") {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if !strings.Contains(doc, "`"+k+"`") && !strings.Contains(doc, "`"+k+".") {
			t.Errorf("the reference does not document %s", k)
		}
	}
	// Every kind has its section, options or not.
	sources, sinks, _ := strings.Cut(doc, "### Sink kinds")
	for _, name := range reg.SourceNames() {
		if !strings.Contains(sources, "#### `"+name+"`") {
			t.Errorf("the reference has no section on the source kind %s", name)
		}
	}
	for _, name := range reg.SinkNames() {
		if !strings.Contains(sinks, "#### `"+name+"`") {
			t.Errorf("the reference has no section on the sink kind %s", name)
		}
	}
	row := regexp.MustCompile("(?m)^\\| `(pipelines\\.NAME\\.(?:source|sinks\\[\\])\\.[a-z_.0-9]+)` \\| ([^|]*)\\|")
	rows := row.FindAllStringSubmatch(doc, -1)
	if len(rows) < 40 {
		t.Fatalf("%d rows in the reference", len(rows))
	}
	for _, m := range rows {
		key, def := m[1], strings.TrimSpace(m[2])
		if !slices.Contains(keys, key) {
			t.Errorf("the reference documents %s, which no kind has", key)
			continue
		}
		if !strings.HasPrefix(def, "`") {
			continue // no default, or one said in words
		}
		want, err := defaultOf(reg, key)
		if err != nil {
			t.Errorf("%s: %v", key, err)
		} else if strings.Trim(def, "`") != want {
			t.Errorf("%s: the reference gives the default %s, Options sets %q", key, def, want)
		}
	}
}

// defaultOf returns the default of the option at key, as the reference
// writes it.
func defaultOf(reg *pipelines.Registry, key string) (string, error) {
	var opts any
	var rest string
	if r, ok := strings.CutPrefix(key, "pipelines.NAME.source."); ok {
		name, path, _ := strings.Cut(r, ".")
		k, _ := reg.Source(name)
		opts, rest = k.Options(), path
	} else if r, ok := strings.CutPrefix(key, "pipelines.NAME.sinks[]."); ok {
		name, path, _ := strings.Cut(r, ".")
		k, _ := reg.Sink(name)
		opts, rest = k.Options(), path
	}
	v := reflect.ValueOf(opts).Elem()
	for part := range strings.SplitSeq(rest, ".") {
		f, ok := fieldByKey(v, part)
		if !ok {
			return "", fmt.Errorf("no field %s in %s", part, v.Type())
		}
		v = f
	}
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String(), nil
	case pipelines.ByteSize:
		return x.String(), nil
	case fmt.Stringer:
		return x.String(), nil
	}
	return fmt.Sprint(v.Interface()), nil
}

// fieldByKey is the field of struct v with yaml key, looking into inline
// structs.
func fieldByKey(v reflect.Value, key string) (reflect.Value, bool) {
	for i := range v.NumField() {
		tag := v.Type().Field(i).Tag.Get("yaml")
		if tag == ",inline" {
			if f, ok := fieldByKey(v.Field(i), key); ok {
				return f, true
			}
		}
		if tag == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}
