package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRecord publishes a looping clip in real time through an in-process
// relay and records it with `moqbridge record --duration`: the printed file
// exists and holds an fMP4 (ftyp, moov, then fragments).
func TestRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, url, fp := startRelay(t, ctx)
	publishClip(t, ctx, url, fp, "test/rec")
	ann := srv.Origin().Announced("test/rec")
	if _, err := ann.Next(ctx); err != nil {
		t.Fatal(err)
	}
	ann.Close()

	dir := t.TempDir()
	var out strings.Builder
	rec := newRootCommand()
	rec.SetOut(&out)
	rec.SetArgs([]string{"record", "--duration", "3s", "-o", dir, "--fingerprint", fp, url, "test/rec"})
	if err := rec.ExecuteContext(ctx); err != nil {
		t.Fatalf("record: %v", err)
	}
	files := strings.Fields(out.String())
	if len(files) == 0 {
		t.Fatal("record printed no file")
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 1000 || !bytes.Equal(b[4:8], []byte("ftyp")) || !bytes.Contains(b, []byte("moof")) {
		t.Fatalf("%s: %d bytes, not an fMP4 with fragments", files[0], len(b))
	}
}
