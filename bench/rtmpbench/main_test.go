package rtmpbench

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every test and benchmark leaves no goroutine
// behind, and removes the moqbridge binary the benchmarks built.
func TestMain(m *testing.M) {
	code := m.Run()
	removeBuild()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// prepareServe readies a benchmark that pushes media read into memory to
// a serve child: it skips without ffmpeg and ffprobe, makes the input of
// spec (cached), reads its media, builds moqbridge and starts serve. The
// caller stops serve.
func prepareServe(b *testing.B, spec inputSpec) (string, *media, *serveProc) {
	b.Helper()
	if err := needTools(); err != nil {
		b.Skip(err)
	}
	in, err := ensureInput(spec)
	if err != nil {
		b.Fatal(err)
	}
	m, err := readFLV(in, spec.fps)
	if err != nil {
		b.Fatal(err)
	}
	bin, err := buildMoqbridge()
	if err != nil {
		b.Fatal(err)
	}
	serve, err := startServe(bin)
	if err != nil {
		b.Fatal(err)
	}
	return in, m, serve
}
