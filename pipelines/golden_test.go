package pipelines

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/ from what the loader does now")

// TestInvalidConfigs: every testdata/invalid/*.yaml is refused with
// exactly the problems its .golden file lists.
func TestInvalidConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) < 12 {
		t.Fatalf("want at least 12 broken configs, found %d (%v)", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := LoadWith(file, testRegistry(), LoadOptions{LookupEnv: testEnv})
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			checkGolden(t, strings.TrimSuffix(file, ".yaml")+".golden", err.Error()+"\n")
		})
	}
}

// TestValidConfigs: every testdata/valid/*.yaml loads, and its plan is
// its .golden file.
func TestValidConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid configs (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := LoadWith(file, testRegistry(), LoadOptions{LookupEnv: testEnv})
			if err != nil {
				t.Fatal(err)
			}
			var plan bytes.Buffer
			if err := cfg.Plan(&plan); err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{"abcd-efgh-ijkl", "hunter2", "s3cret-token"} {
				if strings.Contains(plan.String(), secret) {
					t.Errorf("the plan shows the secret %q", secret)
				}
			}
			checkGolden(t, strings.TrimSuffix(file, ".yaml")+".golden", plan.String())
		})
	}
}

func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("got:\n%s\nwant (%s):\n%s", got, golden, want)
	}
}
