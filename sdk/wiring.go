package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/moqbridge/moqbridge/moq"
)

// The wiring between sources, sinks and an Origin lives here, once, so that
// no adapter or command writes it by hand:
//
//   - Publish runs a Source into a new broadcast at a path.
//   - A Publisher is what a listener source (one listener, many
//     broadcasts: an RTMP server, one per stream key) is given: it starts,
//     replaces and ends broadcasts at paths it is allowed to use.
//   - Consume runs a Sink on the broadcast at a path, Follow on every
//     broadcast under a prefix as they come and go.
//
// A broadcast enters the Origin only once its catalog lists its first
// tracks, so a subscriber that reacts to the announcement finds
// catalog.json, and it leaves the Origin (its tracks ended) when its
// source is done.

// PermanentError marks an error that retrying cannot cure: a bad
// configuration, an unsupported codec, a path that is not allowed. A
// supervisor reports it and does not restart what failed; any other error
// is taken as transient (the network, a peer that went away) and is worth
// retrying with backoff.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent (nil stays nil).
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err is one that retrying cannot cure: marked
// with Permanent, an invalid path (moq.ErrInvalidPath), a track the
// catalog cannot describe, a decoder configuration that does not parse, or
// a container the reader does not support.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe) || errors.Is(err, moq.ErrInvalidPath) || errors.Is(err, errInvalidTrack) ||
		errors.Is(err, errBadConfig) || errors.Is(err, ErrUnsupportedContainer)
}

// ErrPathNotAllowed reports a path outside the prefixes a Publisher may
// use; it is permanent.
var ErrPathNotAllowed = errors.New("sdk: path not allowed")

// ErrPathLive reports that a broadcast is already live at a path a
// Publisher was asked to start, and replacing was not asked for.
var ErrPathLive = errors.New("sdk: a broadcast is already live at this path")

// PublishOptions tune Publish and the broadcasts of a Publisher. The zero
// value is ready to use.
type PublishOptions struct {
	// Writer configures the BroadcastWriter.
	Writer WriterConfig
	// Cache bounds what each track of the broadcast keeps (zero fields
	// take moq's defaults).
	Cache moq.CacheConfig
	// Published, if set, is called once the broadcast is in the Origin,
	// with its path.
	Published func(path string)
}

// Publish runs src into a new broadcast published in origin at path and
// returns when src returns or ctx ends; then the broadcast is closed (its
// tracks end, it leaves the Origin). The broadcast enters the Origin once
// its catalog has its first tracks. Publish returns src's error, nil when
// ctx ended; an invalid path or a source error marked Permanent is
// permanent (IsPermanent).
func Publish(ctx context.Context, origin *moq.Origin, path string, src Source, opts PublishOptions) error {
	p := NewPublisher(origin, PublisherOptions{Publish: opts, IfLive: Backup})
	defer p.Close()
	return p.Publish(ctx, path, src)
}

// IfLive is what a Publisher does when asked to start a broadcast at a
// path where one is live already.
type IfLive int

const (
	// Refuse fails with ErrPathLive (the default).
	Refuse IfLive = iota
	// Replace ends the publisher's own broadcast at the path first;
	// another source's broadcast stays live and the new one waits as its
	// backup.
	Replace
	// Backup lets the new broadcast wait as a backup behind the live one,
	// going live when it ends: the Origin's own behaviour, and the
	// relay's for MOQ publishers.
	Backup
)

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	// Prefixes are the paths the publisher may start broadcasts under
	// (nil: any path).
	Prefixes []string
	// IfLive says what Start does at a path where a broadcast is live.
	IfLive IfLive
	// Publish tunes every broadcast it starts.
	Publish PublishOptions
	// Started, if set, is called with every broadcast Start makes, before
	// Start returns it; Ended once that broadcast ended (End, a
	// replacement, or Close). A supervisor reads the broadcast's writer
	// counters (b.Writer().Stats) between the two. Neither may block or
	// call the Publisher.
	Started, Ended func(b *Broadcast)
}

// Publisher starts and ends broadcasts in an Origin on behalf of a
// listener source, within the prefixes it is allowed. Its methods are safe
// for concurrent use.
type Publisher struct {
	origin *moq.Origin
	opts   PublisherOptions

	mu     sync.Mutex
	closed bool
	live   map[string]*Broadcast // the latest started at each path, not ended
	all    map[*Broadcast]struct{}
	wg     sync.WaitGroup
}

// NewPublisher returns a Publisher into origin.
func NewPublisher(origin *moq.Origin, opts PublisherOptions) *Publisher {
	return &Publisher{origin: origin, opts: opts, live: make(map[string]*Broadcast), all: make(map[*Broadcast]struct{})}
}

// Listener is a source that makes many broadcasts: one listener, a
// broadcast per publishing client (an RTMP server: one per stream key).
// Run serves until ctx ends or the listener fails, starting and ending
// broadcasts through p; the caller closes p after Run returns, which ends
// what is still live.
type Listener interface {
	Run(ctx context.Context, p *Publisher) error
}

// Broadcast is a broadcast a Publisher started: a BroadcastWriter to write
// tracks and frames into, which enters the Origin once its catalog has its
// first tracks.
type Broadcast struct {
	p    *Publisher
	path string
	w    *BroadcastWriter
	mb   *moq.BroadcastWriter
	done chan struct{}
	once sync.Once
}

// Path is where the broadcast is published.
func (b *Broadcast) Path() string { return b.path }

// Writer is what the source writes tracks and frames into.
func (b *Broadcast) Writer() *BroadcastWriter { return b.w }

// Done returns a channel closed once the broadcast ended (End, a
// replacement, or the Publisher closing).
func (b *Broadcast) Done() <-chan struct{} { return b.done }

// End closes the broadcast: its tracks end and it leaves the Origin (a
// backup waiting at its path goes live). Calling End again does nothing.
func (b *Broadcast) End() {
	b.once.Do(func() {
		_ = b.w.Close()
		b.p.origin.Unpublish(b.path, b.mb.Reader())
		b.p.mu.Lock()
		if b.p.live[b.path] == b {
			delete(b.p.live, b.path)
		}
		delete(b.p.all, b)
		b.p.mu.Unlock()
		close(b.done)
		if fn := b.p.opts.Ended; fn != nil {
			fn(b)
		}
	})
}

// Start begins a broadcast at path. It fails with a permanent error for an
// invalid path or one outside the allowed prefixes; where a broadcast is
// live already (this publisher's or another source's), PublisherOptions.
// IfLive decides.
func (p *Publisher) Start(path string) (*Broadcast, error) {
	if err := moq.ValidatePath(path); err != nil {
		return nil, Permanent(fmt.Errorf("sdk: publish at %q: %w", path, err))
	}
	if !p.allowed(path) {
		return nil, Permanent(fmt.Errorf("sdk: publish at %q: %w (allowed: %q)", path, ErrPathNotAllowed, p.opts.Prefixes))
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("sdk: publish at %q: %w", path, moq.ErrClosed)
	}
	old := p.live[path]
	p.mu.Unlock()
	switch {
	case p.opts.IfLive == Replace && old != nil:
		old.End()
	case p.opts.IfLive == Backup:
	default:
		if _, err := p.origin.Consume(path); err == nil {
			return nil, fmt.Errorf("sdk: publish at %q: %w", path, ErrPathLive)
		}
	}
	mb := moq.NewBroadcastWithCache(p.opts.Publish.Cache)
	w, err := NewBroadcastWriter(mb, p.opts.Publish.Writer)
	if err != nil {
		_ = mb.Close()
		return nil, err
	}
	b := &Broadcast{p: p, path: path, w: w, mb: mb, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = w.Close()
		return nil, fmt.Errorf("sdk: publish at %q: %w", path, moq.ErrClosed)
	}
	p.live[path] = b
	p.all[b] = struct{}{}
	p.wg.Add(1)
	if fn := p.opts.Started; fn != nil {
		fn(b) // under p.mu, so that it comes before the broadcast's Ended
	}
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		select {
		case <-w.CatalogWritten():
		case <-b.done:
			return
		}
		if err := p.origin.Publish(path, mb.Reader()); err != nil {
			// The broadcast closed meanwhile, or the Origin did.
			return
		}
		if fn := p.opts.Publish.Published; fn != nil {
			fn(path)
		}
	}()
	return b, nil
}

// Publish runs src into a new broadcast at path until src returns or ctx
// ends, as the package-level Publish does, within this publisher's
// prefixes.
func (p *Publisher) Publish(ctx context.Context, path string, src Source) error {
	b, err := p.Start(path)
	if err != nil {
		return err
	}
	defer b.End()
	err = src.Run(ctx, b.Writer())
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Live returns the paths of this publisher's broadcasts that have not
// ended.
func (p *Publisher) Live() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.live))
	for path := range p.live {
		out = append(out, path)
	}
	return out
}

// Close ends every broadcast still live and refuses new ones.
func (p *Publisher) Close() {
	p.mu.Lock()
	p.closed = true
	live := make([]*Broadcast, 0, len(p.all))
	for b := range p.all {
		live = append(live, b)
	}
	p.mu.Unlock()
	for _, b := range live {
		b.End()
	}
	p.wg.Wait()
}

func (p *Publisher) allowed(path string) bool {
	if p.opts.Prefixes == nil {
		return true
	}
	for _, prefix := range p.opts.Prefixes {
		if moq.HasPathPrefix(moq.CleanPath(path), moq.CleanPath(prefix)) {
			return true
		}
	}
	return false
}

// ConsumeOptions tune Consume and Follow. The zero value is ready to use.
type ConsumeOptions struct {
	// Wait bounds how long Consume waits for the broadcast to be live
	// before failing with moq.ErrNotFound (wrapped); 0 waits for as long
	// as ctx allows.
	Wait time.Duration
}

// Consume waits until a broadcast is live at path in origin (see
// ConsumeOptions.Wait), then runs sink on it with a BroadcastReader whose
// Path is path, and returns when the sink returns (its error) or ctx ends
// (nil). The sink sees the broadcast's end as the end of its tracks.
func Consume(ctx context.Context, origin *moq.Origin, path string, sink Sink, opts ConsumeOptions) error {
	b, err := WaitBroadcast(ctx, origin, path, opts.Wait)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	err = RunSink(ctx, b, path, sink)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// WaitBroadcast returns the broadcast live at path in origin, waiting for
// it to be announced for up to wait (0: as long as ctx allows). It fails
// with moq.ErrNotFound (wrapped) when wait passes, ctx's error when ctx
// ends, and moq.ErrClosed when the Origin is closed.
func WaitBroadcast(ctx context.Context, origin *moq.Origin, path string, wait time.Duration) (*moq.BroadcastReader, error) {
	ann := origin.Announced(path)
	defer ann.Close()
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	for {
		a, err := ann.Next(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && wait > 0 {
				return nil, fmt.Errorf("sdk: no broadcast at %q within %s: %w", path, wait, moq.ErrNotFound)
			}
			return nil, err
		}
		if a.Active && a.Path == path {
			return a.Broadcast, nil
		}
	}
}

// RunSink runs sink on broadcast b, found at path, and returns its error.
// The sink's BroadcastReader reports path as its Path, and its tracks start
// at the oldest group the broadcast still caches (moq.FromOldest): a sink
// attached just after its source started misses nothing.
func RunSink(ctx context.Context, b *moq.BroadcastReader, path string, sink Sink) error {
	return RunSinkFrom(ctx, b, path, sink, moq.FromOldest)
}

// RunSinkFrom is RunSink with the sink's tracks starting at from: a
// recorder of a live broadcast that wants nothing from before it started
// passes moq.FromLatest.
func RunSinkFrom(ctx context.Context, b *moq.BroadcastReader, path string, sink Sink, from moq.StartPoint) error {
	r, err := NewBroadcastReaderFrom(b, from)
	if err != nil {
		return err
	}
	r.path = path
	defer r.Close()
	return sink.Run(ctx, r)
}

// Follow runs a sink on every broadcast under prefix in origin, each on its
// own goroutine, as they are announced: newSink makes the sink of a path
// (an error from it is passed to done and that broadcast skipped). A
// broadcast that ends ends its sink's input; one replaced at its path gets
// a new sink. done, if set, is called with each sink's result. Follow
// returns when ctx ends or the Origin closes, once every sink it started
// has returned.
func Follow(ctx context.Context, origin *moq.Origin, prefix string, newSink func(path string) (Sink, error), done func(path string, err error)) error {
	ann := origin.Announced(prefix)
	defer ann.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	report := func(path string, err error) {
		if done != nil {
			done(path, err)
		}
	}
	for {
		a, err := ann.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, moq.ErrClosed) {
				return nil
			}
			return err
		}
		if !a.Active {
			continue // its sink sees the broadcast end
		}
		sink, err := newSink(a.Path)
		if err != nil {
			report(a.Path, err)
			continue
		}
		wg.Go(func() {
			err := RunSink(ctx, a.Broadcast, a.Path, sink)
			if ctx.Err() != nil {
				err = nil
			}
			report(a.Path, err)
		})
	}
}
