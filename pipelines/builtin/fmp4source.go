package builtin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/fmp4"
)

// FMP4SourceOptions are the options of the fmp4 source: one MP4 input,
// published at the pipeline's path.
type FMP4SourceOptions struct {
	// File is an MP4 file, fragmented or progressive, relative to the
	// config file's directory; "-" reads a fragmented MP4 stream from
	// standard input (ffmpeg -movflags cmaf+… -f mp4 -), once: a source
	// restarted after it ended or failed cannot read it again. Exactly one
	// of file and url is set.
	File string `yaml:"file"`
	// URL is an http:// or https:// URL whose body is fragmented MP4 (a
	// live stream, or a fragmented file), read as a stream as it arrives:
	// progressive MP4, which needs seeking, is for files only.
	URL string `yaml:"url"`
	// Loop plays a file again from its start at its end, forever, the
	// timestamps and group sequences going on (default false; files only,
	// not stdin or a URL).
	Loop bool `yaml:"loop"`
	// Fast writes the frames as fast as they are read instead of in real
	// time (default false: a file is paced by its timestamps).
	Fast bool `yaml:"fast"`
	// Realtime paces a stream (stdin, a URL) by its timestamps too
	// (default false: a stream comes at its own pace, as a live one does;
	// set it for a recorded file served over HTTP or piped in).
	Realtime bool `yaml:"realtime"`
	// ReadTimeout ends the connection to a url that sent nothing for this
	// long while the source waited for data, so that a stalled server is
	// retried (default 30s; 0: wait for as long as it takes).
	ReadTimeout time.Duration `yaml:"read_timeout"`
}

// DefaultReadTimeout is the default of FMP4SourceOptions.ReadTimeout.
const DefaultReadTimeout = 30 * time.Second

// Validate implements pipelines.Validator. A relative file is checked for
// existence by ValidateDir, which knows the config file's directory; an
// absolute one is checked here.
func (o *FMP4SourceOptions) Validate() error {
	var errs []error
	switch {
	case o.File == "" && o.URL == "":
		errs = append(errs, fieldErr("file", "either file (a path, or - for stdin) or url is required"))
	case o.File != "" && o.URL != "":
		errs = append(errs, fieldErr("url", "file and url exclude each other: set one"))
	case o.URL != "":
		if _, err := parseHTTPURL(o.URL); err != nil {
			errs = append(errs, &pipelines.FieldError{Field: "url", Err: err})
		}
	}
	if o.Loop {
		switch {
		case o.File == "-":
			errs = append(errs, fieldErr("loop", "is for files: stdin cannot be rewound"))
		case o.URL != "":
			errs = append(errs, fieldErr("loop", "is for files: a URL is read as a stream, which cannot be rewound"))
		}
	}
	if err := nonNegative("read_timeout", o.ReadTimeout); err != nil {
		errs = append(errs, err)
	}
	if o.Fast && o.Realtime {
		errs = append(errs, fieldErr("realtime", "fast and realtime exclude each other"))
	}
	if o.File != "" && o.File != "-" && filepath.IsAbs(o.File) {
		if err := checkFile(o.File); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ValidateDir is Validate with a relative file resolved against dir, the
// config file's directory: it also reports a file that does not exist or
// is not a regular file.
func (o *FMP4SourceOptions) ValidateDir(dir string) error {
	err := o.Validate()
	if err != nil || o.File == "" || o.File == "-" || filepath.IsAbs(o.File) {
		return err
	}
	return checkFile(resolve(dir, o.File))
}

// checkFile reports, at "file", a name that is not a readable regular
// file.
func checkFile(name string) error {
	st, err := os.Stat(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fieldErr("file", "%s does not exist", name)
		}
		return &pipelines.FieldError{Field: "file", Err: err}
	}
	if !st.Mode().IsRegular() {
		return fieldErr("file", "%s is not a regular file", name)
	}
	return nil
}

// parseHTTPURL checks an http:// or https:// URL; its errors do not show
// the URL's password or query.
func parseHTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a valid URL: %w", errors.Unwrap(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s: the scheme must be http:// or https://", redactHTTP(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%s has no host", redactHTTP(u))
	}
	return u, nil
}

// redactHTTP writes u for logs and errors: without its user information
// and query, which may hold credentials.
func redactHTTP(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = nil, "", false, "", ""
	return c.String()
}

// FMP4Source is the fmp4 source kind: an MP4 file (looped or not), a
// fragmented MP4 stream on stdin, or one fetched over HTTP, published at
// the pipeline's path.
func FMP4Source() pipelines.SourceKind {
	stdin := &stdinReader{r: os.Stdin}
	return pipelines.SourceKind{
		Name:    "fmp4",
		Summary: "an MP4 file (fragmented or progressive, optionally looped), fragmented MP4 on stdin, or over http(s)",
		Options: func() any { return &FMP4SourceOptions{ReadTimeout: DefaultReadTimeout} },
		NewSource: func(env pipelines.SourceEnv, opts any) (sdk.Source, error) {
			o, err := optionsOf[FMP4SourceOptions]("fmp4", opts)
			if err != nil {
				return nil, err
			}
			return newFMP4Source(env, o, stdin)
		},
	}
}

// fmp4Source runs a new sources/fmp4 Source on every Run, so that a
// restarted pipeline reads its input again (a file from its start, a URL
// with a new request).
type fmp4Source struct {
	file   string   // resolved path, "-" for stdin, "" for a URL
	url    *url.URL // nil for a file or stdin
	stdin  *stdinReader
	opts   fmp4.Options
	client *http.Client
	// readTimeout bounds a wait for the URL's data (0: none).
	readTimeout time.Duration
}

// stdinReader is the process's standard input, which one source of a
// kind may read, once: a stream cannot be read again from its start, so
// a restarted source, or a second pipeline reading "-", fails for good.
type stdinReader struct {
	r    io.Reader
	used atomic.Bool
}

// claim reports whether the caller is the first to ask for the reader.
func (s *stdinReader) claim() bool { return s.used.CompareAndSwap(false, true) }

func newFMP4Source(env pipelines.SourceEnv, o *FMP4SourceOptions, stdin *stdinReader) (*fmp4Source, error) {
	if err := o.ValidateDir(env.Dir); err != nil {
		return nil, sdk.Permanent(err)
	}
	s := &fmp4Source{stdin: stdin, opts: fmp4.Options{Fast: o.Fast, Realtime: o.Realtime, Loop: o.Loop}}
	switch {
	case o.URL != "":
		u, err := parseHTTPURL(o.URL)
		if err != nil {
			return nil, sdk.Permanent(&pipelines.FieldError{Field: "url", Err: err})
		}
		s.url, s.client, s.readTimeout = u, &http.Client{}, o.ReadTimeout
	case o.File == "-":
		s.file = "-"
	default:
		s.file = resolve(env.Dir, o.File)
	}
	return s, nil
}

// Run implements sdk.Source. A malformed file is a permanent error (it
// will be as malformed next time); a malformed or cut stream is not.
func (s *fmp4Source) Run(ctx context.Context, w *sdk.BroadcastWriter) error {
	switch {
	case s.url != nil:
		return s.runURL(ctx, w)
	case s.file == "-":
		if !s.stdin.claim() {
			return sdk.Permanent(errors.New("fmp4: standard input was read already and cannot be read again (a restarted source, or a second pipeline reading -)"))
		}
		return fmp4.New(s.stdin.r, s.opts).Run(ctx, w)
	}
	src, err := fmp4.Open(s.file, s.opts)
	if err != nil {
		return sdk.Permanent(err)
	}
	err = src.Run(ctx, w)
	var fe *fmp4.FormatError
	if errors.As(err, &fe) || errors.Is(err, fmp4.ErrNoTracks) {
		return sdk.Permanent(fmt.Errorf("%s: %w", s.file, err))
	}
	return err
}

// errStalled ends a request whose server sent nothing for the read
// timeout.
var errStalled = errors.New("no data within the read timeout")

// runURL reads the body of a GET of the URL as a stream.
func (s *fmp4Source) runURL(ctx context.Context, w *sdk.BroadcastWriter) error {
	shown := redactHTTP(s.url)
	// The request has a context of its own, which the read timeout
	// cancels; the source runs with ctx, so that a stall is an error and
	// not the end of the run.
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var stall *time.Timer
	if s.readTimeout > 0 {
		stall = time.AfterFunc(s.readTimeout, func() { cancel(errStalled) })
		defer stall.Stop()
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, s.url.String(), nil)
	if err != nil {
		return sdk.Permanent(fmt.Errorf("fmp4: GET %s: %w", shown, errors.Unwrap(err)))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(context.Cause(reqCtx), errStalled) {
			err = errStalled
		}
		// A *url.Error shows the URL with its query: keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("fmp4: GET %s: %w", shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("fmp4: GET %s: %s", shown, resp.Status)
		if permanentStatus(resp.StatusCode) {
			return sdk.Permanent(err)
		}
		return err
	}
	var body io.Reader = resp.Body
	if stall != nil {
		stall.Stop()
		body = &stallReader{r: resp.Body, timer: stall, timeout: s.readTimeout}
	}
	err = fmp4.New(body, s.opts).Run(ctx, w)
	if ctx.Err() == nil && errors.Is(context.Cause(reqCtx), errStalled) {
		return fmt.Errorf("fmp4: GET %s: %w (%v)", shown, errStalled, s.readTimeout)
	}
	return err
}

// stallReader arms timer for the length of every Read: a server that
// makes one wait longer than the timeout has its request cancelled.
// Only the reads count, not the time the source spends pacing frames.
type stallReader struct {
	r       io.Reader
	timer   *time.Timer
	timeout time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	s.timer.Reset(s.timeout)
	n, err := s.r.Read(p)
	s.timer.Stop()
	return n, err
}

// permanentStatus reports whether an HTTP status means that asking again
// cannot help: a 4xx (wrong URL, credentials), except those that say to
// come back later (404: a live stream not started yet, 408, 425, 429).
func permanentStatus(code int) bool {
	switch code {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return code >= 400 && code < 500
}
