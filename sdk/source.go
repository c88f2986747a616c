package sdk

import (
	"context"
	"errors"
)

// ErrInputIdle is wrapped by the error a Source's Run returns when its
// input went silent (an RTP sender that stopped): the broadcast ends, as
// it should, and the source is ready to receive the input again. It is
// the input's normal end, not a failure: a supervisor runs the source
// again at once, without backing off (pipelines do).
var ErrInputIdle = errors.New("the input went silent")

// Source turns foreign media into a broadcast: Run adds tracks to w and
// writes their frames until ctx ends or the media ends. Run does not close
// w; whoever created w closes it after Run returns.
type Source interface {
	Run(ctx context.Context, w *BroadcastWriter) error
}

// Sink consumes a broadcast: Run reads r's catalog and tracks until ctx
// ends or the broadcast ends. Run closes the TrackReaders it opens, not r.
type Sink interface {
	Run(ctx context.Context, r *BroadcastReader) error
}

// SourceFunc adapts a function to the Source interface.
type SourceFunc func(ctx context.Context, w *BroadcastWriter) error

// Run calls f(ctx, w).
func (f SourceFunc) Run(ctx context.Context, w *BroadcastWriter) error { return f(ctx, w) }

// SinkFunc adapts a function to the Sink interface.
type SinkFunc func(ctx context.Context, r *BroadcastReader) error

// Run calls f(ctx, r).
func (f SinkFunc) Run(ctx context.Context, r *BroadcastReader) error { return f(ctx, r) }
