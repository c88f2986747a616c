package sdk

import (
	"testing"

	"github.com/moqbridge/moqbridge/moq"
)

// TestCatalogWritten: the channel closes when the first catalog is
// published, not before, and later catalogs leave it alone.
func TestCatalogWritten(t *testing.T) {
	pb := moq.NewBroadcast()
	w, err := NewBroadcastWriter(pb, WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	select {
	case <-w.CatalogWritten():
		t.Fatal("closed before any catalog")
	default:
	}
	tr, err := OpusFromChannels(2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddTrack(tr); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.CatalogWritten():
	default:
		t.Fatal("not closed after the first catalog")
	}
	if _, err := w.AddTrack(Track{Name: "v", Kind: KindVideo, Codec: "vp8"}); err != nil {
		t.Fatal(err)
	}
	<-w.CatalogWritten()
}
