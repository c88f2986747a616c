package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// Ended reports whether err, which ended a track or the catalog of a
// broadcast, is the normal end of the broadcast (io.EOF or moq.ErrClosed)
// rather than its loss (the relay or the publisher went away).
func Ended(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, moq.ErrClosed)
}

// WaitSinkTracks is how the Run of a sink that takes its tracks once
// starts: it waits for the catalog to list tracks and hold still for
// quiet (WaitTracks), and reports whether Run goes on to r.Tracks. When
// it does not, err is what Run returns: nil when ctx ended; an error
// wrapping lost (the sink's ErrSourceLost) and the reason when the
// broadcast was lost (see Ended); else, the broadcast having ended before
// it listed a track, the reason prefixed with sink ("rtmp").
func (r *BroadcastReader) WaitSinkTracks(ctx context.Context, quiet time.Duration, sink string, lost error) (ok bool, err error) {
	err = r.WaitTracks(ctx, quiet)
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, nil
	case !Ended(err):
		return false, fmt.Errorf("%w: %w", lost, err)
	}
	return false, fmt.Errorf("%s: %w", sink, err)
}

// SubscribeSinkTracks subscribes to the named tracks, in order, for a
// sink's Run, which closes them with closeAll when it ends. When one
// cannot be subscribed to, those that were are closed and err is what Run
// returns: an error wrapping lost when the broadcast went away between
// its catalog and the subscription (and ctx has not ended), else the
// reason prefixed with sink.
func (r *BroadcastReader) SubscribeSinkTracks(ctx context.Context, names []string, sink string, lost error) (readers []FrameReader, closeAll func(), err error) {
	trs := make([]*TrackReader, 0, len(names))
	closeAll = func() {
		for _, tr := range trs {
			tr.Close()
		}
	}
	for _, name := range names {
		tr, err := r.Subscribe(name)
		if err != nil {
			closeAll()
			if errors.Is(err, moq.ErrClosed) && ctx.Err() == nil {
				return nil, nil, fmt.Errorf("%w: %w", lost, err)
			}
			return nil, nil, fmt.Errorf("%s: %w", sink, err)
		}
		trs = append(trs, tr)
		readers = append(readers, tr)
	}
	return readers, closeAll, nil
}
