package pipelines

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: any bytes are a configuration or a *ConfigError, never a
// panic; a configuration that loads is complete (every pipeline has a
// source or a from, a fingerprint) and its Plan writes.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	for _, file := range seeds {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("pipelines: {p: {from: '*', sinks: [record: {dir: ${EMPTY:-x}}]}}"))
	reg := testRegistry()
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseWith(data, "fuzz.yaml", reg, LoadOptions{LookupEnv: testEnv})
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %v is not a *ConfigError with problems", err)
			}
			return
		}
		for _, p := range cfg.Pipelines {
			if (p.Source == nil) == (p.From == "") || p.Fingerprint == "" || p.Yields() == "" {
				t.Fatalf("incomplete pipeline %+v", p)
			}
		}
		if err := cfg.Plan(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}
