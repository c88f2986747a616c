package protocol

import (
	"context"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/internal/transport"
)

// The relay's plain HTTP routes, as the reference relay serves them
// (moq-relay's web.rs), on the TCP side (ServerConfig.TCP) and over HTTP/3.
// GET /certificate.sha256 and the WebSocket upgrade on any path are the
// listener's own; everything else comes here.
const (
	announcedRoute = "/announced"
	fetchRoute     = "/fetch/"
)

// fetchTimeout bounds a /fetch request, as in the reference relay: the
// wait for the group (when none is cached yet, or the one asked for has
// not arrived) and for its frames. A request still waiting for its group
// then gets 504 Gateway Timeout.
const fetchTimeout = 30 * time.Second

// fetchWriteTimeout bounds each write of a /fetch response, so a client
// that stops reading cannot hold the group (and its handler) for longer.
const fetchWriteTimeout = 30 * time.Second

// fetchGoneGrace is how long a /fetch of group N still waits once a
// newer group arrived without it. The reference answers "gone" as soon as
// a newer sequence exists; a peer asked for its cached groups sends them
// beside its live one, though, and the live one may land first.
const fetchGoneGrace = 500 * time.Millisecond

// fetchPriority is the priority of the subscription a /fetch makes (the
// middle of the range: an HTTP fetch is neither a player nor background).
const fetchPriority = 128

// groupHeader names the response header of /fetch that carries the
// sequence number of the group served, which "group=latest" leaves open.
const groupHeader = "Moq-Group"

// serveWeb answers every plain HTTP request the listener passes on:
// /announced[/PREFIX], /fetch/BROADCAST/TRACK and, for any other path, the
// landing page (404). Responses may be read cross-origin (CORS, GET).
func (s *Server) serveWeb(w http.ResponseWriter, r *http.Request) {
	if !s.beginWeb() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.web.Done()
	// The request ends with the client's connection or with Close.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.webCtx, cancel)()
	r = r.WithContext(ctx)

	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		// A CORS preflight: only GET is allowed, from any origin.
		h.Set("Access-Control-Allow-Methods", "GET")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	path := r.URL.Path
	switch {
	case path == announcedRoute || strings.HasPrefix(path, announcedRoute+"/"):
		if getOnly(w, r) {
			s.serveAnnounced(w, r, strings.TrimPrefix(path, announcedRoute))
		}
	case strings.HasPrefix(path, fetchRoute):
		if getOnly(w, r) {
			s.serveFetch(w, r, strings.TrimPrefix(path, fetchRoute))
		}
	default:
		s.serveLanding(w, r)
	}
}

// beginWeb counts a request in, unless the server is closing.
func (s *Server) beginWeb() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.web.Add(1)
	return true
}

// getOnly answers anything but GET and HEAD with 405.
func getOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
	return false
}

// webError answers a request that failed before its body started.
func webError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, status)
}

// checkWebPath applies the session rules for paths and names a peer sends
// (Limits.MaxPathLength, moq.ValidatePath: no "." or ".." segment, no
// control character) to one taken from a request's URL, answering 414 or
// 400 when it breaks them.
func (s *Server) checkWebPath(w http.ResponseWriter, what, p string) bool {
	maxLen := s.cfg.Limits.withDefaults().MaxPathLength
	if len(p) > maxLen {
		webError(w, http.StatusRequestURITooLong, what+" is longer than "+strconv.Itoa(maxLen)+" bytes")
		return false
	}
	if err := moq.ValidatePathMax(p, maxLen); err != nil {
		webError(w, http.StatusBadRequest, what+": "+err.Error())
		return false
	}
	return true
}

// webPermissions scopes a request to root exactly as a session whose URL
// path is root: the token of the jwt query parameter, its root and get
// prefixes, the public prefix. A request the server would not let connect
// is answered 401.
func (s *Server) webPermissions(w http.ResponseWriter, r *http.Request, root string) (Permissions, bool) {
	perm, err := s.authorize(&url.URL{Path: root, RawQuery: r.URL.RawQuery})
	if err != nil {
		s.log.Debug("moq http request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		webError(w, http.StatusUnauthorized, "unauthorized")
		return Permissions{}, false
	}
	perm.Root = moq.CleanPath(perm.Root)
	return perm, true
}

// serveAnnounced answers GET /announced[/PREFIX] with the broadcasts
// active under PREFIX that the request's token may subscribe to, one path
// per line, relative to PREFIX (what a session with PREFIX as its URL path
// would see announced), sorted, lines joined by "\n" as the reference
// relay does. A token that may not subscribe anywhere under PREFIX gets
// 401, as a token that does not authorize PREFIX at all.
func (s *Server) serveAnnounced(w http.ResponseWriter, r *http.Request, prefix string) {
	prefix = moq.CleanPath(prefix)
	if !s.checkWebPath(w, "prefix", prefix) {
		return
	}
	perm, ok := s.webPermissions(w, r, prefix)
	if !ok {
		return
	}
	if perm.Subscribe != nil && len(perm.Subscribe) == 0 {
		// A publish-only token (the reference: no subscriber origin).
		webError(w, http.StatusUnauthorized, "unauthorized: the token may not subscribe under "+strconv.Quote(prefix))
		return
	}
	ann := s.origin.Announced(perm.Root)
	defer ann.Close()
	// Right after Announced, TryNext yields exactly what is active.
	var suffixes []string
	for {
		a, ok, err := ann.TryNext()
		if err != nil || !ok {
			break
		}
		if !a.Active {
			continue
		}
		suffix := moq.PathSuffix(a.Path, perm.Root)
		if perm.may(perm.Subscribe, suffix) {
			suffixes = append(suffixes, suffix)
		}
	}
	slices.Sort(suffixes)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, strings.Join(suffixes, "\n"))
}

// fetchQuery is what the query of a /fetch request selects.
type fetchQuery struct {
	latest bool   // group=latest (the default) rather than group=N
	group  uint64 // N of group=N
	whole  bool   // every frame (frame=chunked, the default) rather than frame=N
	frame  uint64 // N of frame=N
}

// parseFetchQuery reads group=latest|N and frame=chunked|N (decimal, up
// to 2^64-1; anything else is an error).
func parseFetchQuery(q url.Values) (fetchQuery, error) {
	fq := fetchQuery{latest: true, whole: true}
	switch g := q.Get("group"); g {
	case "", "latest":
	default:
		n, err := strconv.ParseUint(g, 10, 64)
		if err != nil {
			return fq, errors.New("group must be \"latest\" or a sequence number")
		}
		fq.latest, fq.group = false, n
	}
	switch f := q.Get("frame"); f {
	case "", "chunked":
	default:
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return fq, errors.New("frame must be \"chunked\" or a frame index")
		}
		fq.whole, fq.frame = false, n
	}
	return fq, nil
}

// serveFetch answers GET /fetch/BROADCAST/TRACK?group=latest|N&frame=N
// with one group of a track of the server's Origin: the last path segment
// is the track (track names have no "/"), the rest the broadcast. The
// body is every frame of the group concatenated, streamed as they come
// (frame=N: frame N alone). Scoped like a session subscribing from
// BROADCAST as its URL path: a token that does not authorize it gets 401,
// one whose get prefixes do not cover the broadcast 404, as for a
// broadcast or track that does not exist. See findGroup for the waiting.
func (s *Server) serveFetch(w http.ResponseWriter, r *http.Request, rest string) {
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		webError(w, http.StatusBadRequest, "want /fetch/BROADCAST/TRACK")
		return
	}
	broadcast, track := moq.CleanPath(rest[:i]), rest[i+1:]
	if broadcast == "" || track == "" {
		webError(w, http.StatusBadRequest, "want /fetch/BROADCAST/TRACK")
		return
	}
	if !s.checkWebPath(w, "broadcast", broadcast) || !s.checkWebPath(w, "track", track) {
		return
	}
	fq, err := parseFetchQuery(r.URL.Query())
	if err != nil {
		webError(w, http.StatusBadRequest, err.Error())
		return
	}
	perm, ok := s.webPermissions(w, r, broadcast)
	if !ok {
		return
	}
	if !perm.may(perm.Subscribe, "") {
		webError(w, http.StatusNotFound, "broadcast not found")
		return
	}
	b, err := s.origin.Consume(perm.Root)
	if err != nil {
		webError(w, http.StatusNotFound, "broadcast not found")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.fetchTimeout())
	defer cancel()
	tr, gr, err := findGroup(ctx, b, track, fq)
	if tr != nil {
		defer tr.Close()
	}
	if err != nil {
		s.fetchFailed(w, r, err)
		return
	}
	defer gr.Close()
	s.log.Debug("moq http fetch", "broadcast", perm.Root, "track", track, "group", gr.Sequence(), "remote", r.RemoteAddr)
	s.writeGroup(ctx, w, r, gr, fq)
}

func (s *Server) fetchTimeout() time.Duration {
	if d := s.fetchWait.Load(); d > 0 {
		return time.Duration(d)
	}
	return fetchTimeout
}

// errGroupGone reports a group that will not come: a newer one exists,
// the track ended without it, or it has no frame of the index asked for.
var errGroupGone = errors.New("group not found")

// fetchFailed answers a /fetch whose group or first frame could not be
// had: 404 when it does not exist, 504 when the wait timed out, nothing
// when the client left or the server is closing.
func (s *Server) fetchFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case r.Context().Err() != nil:
		// The client went away, or Close: nobody to answer.
		if s.webCtx.Err() != nil {
			webError(w, http.StatusServiceUnavailable, "server shutting down")
		}
	case errors.Is(err, context.DeadlineExceeded):
		webError(w, http.StatusGatewayTimeout, "nothing to serve within "+s.fetchTimeout().String())
	case errors.Is(err, errGroupGone), errors.Is(err, moq.ErrNotFound), errors.Is(err, moq.ErrClosed), errors.Is(err, io.EOF):
		webError(w, http.StatusNotFound, "not found")
	default:
		s.log.Debug("moq http fetch failed", "path", r.URL.Path, "err", err)
		webError(w, http.StatusInternalServerError, "fetch failed: "+err.Error())
	}
}

// findGroup subscribes to the track and returns the group fq selects,
// with the subscription, which the caller closes once the group is read
// (a track fetched from a peer lives as long as it has a reader).
//
// group=latest is the latest cached group, or the first to arrive when
// none is cached. group=N is the cached group N, or group N when it
// arrives while no newer group exists (then, after fetchGoneGrace, it is
// gone), as the reference's get_group. Both wait until ctx ends.
func findGroup(ctx context.Context, b *moq.BroadcastReader, track string, fq fetchQuery) (*moq.TrackReader, *moq.GroupReader, error) {
	from := moq.FromLatest
	if !fq.latest {
		from = moq.FromOldest
	}
	tr, err := b.SubscribeFrom(track, fetchPriority, from)
	if err != nil {
		return nil, nil, err
	}
	if fq.latest {
		gr, err := tr.NextGroup(ctx)
		return tr, gr, err
	}
	// First the groups cached now. NextArrival hands out a group that is
	// there before it looks at its context, so with one already cancelled
	// it returns every cached group (in arrival order), then
	// context.Canceled. Latest is read before: a group the track had seen
	// by then and that is not among them is gone.
	latest, seen := tr.Latest()
	cached, stop := context.WithCancel(ctx)
	stop()
	for {
		gr, err := tr.NextArrival(cached)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.Canceled) {
				break // every cached group was looked at
			}
			if errors.Is(err, io.EOF) {
				err = errGroupGone
			}
			return tr, nil, err
		}
		if gr.Sequence() == fq.group {
			return tr, gr, nil
		}
		gr.Close()
	}
	if seen && latest >= fq.group {
		return tr, nil, errGroupGone
	}
	wait := ctx
	for {
		gr, err := tr.NextArrival(wait)
		if err != nil {
			if ctx.Err() == nil && wait.Err() != nil {
				err = errGroupGone // the grace after a newer group ran out
			} else if errors.Is(err, io.EOF) {
				err = errGroupGone
			}
			return tr, nil, err
		}
		if gr.Sequence() == fq.group {
			return tr, gr, nil
		}
		if gr.Sequence() > fq.group && wait == ctx {
			var cancel context.CancelFunc
			wait, cancel = context.WithTimeout(ctx, fetchGoneGrace)
			defer cancel()
		}
		gr.Close()
	}
}

// writeGroup streams the frames fq selects from gr. The status is
// decided by the first frame: a group that ends before it is 404 for
// frame=N and an empty 200 otherwise, a timeout 504. Frames are written
// as they come, one at a time from the group's own memory, so a request
// holds nothing beyond the group the track caches anyway; once the body
// started, a group that fails or a frame that does not come in time
// aborts the response, so that the client sees it incomplete.
func (s *Server) writeGroup(ctx context.Context, w http.ResponseWriter, r *http.Request, gr *moq.GroupReader, fq fetchQuery) {
	rc := http.NewResponseController(w)
	// The connection may serve further requests: leave no deadline on it.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	start := func(length int) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Cache-Control", "no-store")
		h.Set(groupHeader, strconv.FormatUint(gr.Sequence(), 10))
		h.Set("Access-Control-Expose-Headers", groupHeader)
		if length >= 0 {
			h.Set("Content-Length", strconv.Itoa(length))
		}
		w.WriteHeader(http.StatusOK)
	}
	write := func(frame []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(fetchWriteTimeout))
		if _, err := w.Write(frame); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !fq.whole {
		for i := uint64(0); ; i++ {
			frame, err := gr.NextFrame(ctx)
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errGroupGone
				}
				s.fetchFailed(w, r, err)
				return
			}
			if i == fq.frame {
				start(len(frame))
				write(frame)
				return
			}
		}
	}
	frame, err := gr.NextFrame(ctx)
	if errors.Is(err, io.EOF) {
		start(0)
		return
	}
	if err != nil {
		s.fetchFailed(w, r, err)
		return
	}
	start(-1)
	for {
		if !write(frame) {
			return // the client went away
		}
		frame, err = gr.NextFrame(ctx)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.log.Debug("moq http fetch cut short", "path", r.URL.Path, "group", gr.Sequence(), "err", err)
			panic(http.ErrAbortHandler)
		}
	}
}

// landingPage is what a browser (or anything but a MOQ client) gets on a
// path the relay has no route for.
var landingPage = template.Must(template.New("landing").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>moqbridge relay</title></head>
<body>
<h1>moqbridge</h1>
<p>This is a moqbridge MOQ Lite relay, and you are not a MOQ client.</p>
<p>Connect a MOQ Lite client (such as <code>@moq/lite</code>) with one of:</p>
<ul>
<li><code>https://{{.Host}}/PATH</code> (WebTransport)</li>
<li><code>moql://{{.Host}}</code> (raw QUIC)</li>
{{- if .WebSocket}}
<li><code>{{.WebSocket}}://{{.Host}}/PATH</code> (WebSocket fallback)</li>
{{- end}}
</ul>
<p>The certificate's SHA-256, for <code>serverCertificateHashes</code>:
<a href="{{.Fingerprint}}">{{.Fingerprint}}</a></p>
<p>Broadcasts: <code>/announced/PREFIX</code>; one group of a track:
<code>/fetch/BROADCAST/TRACK?group=latest</code>.</p>
</body>
</html>
`))

// serveLanding answers an unrouted request with the landing page, status
// 404 as the reference relay does.
func (s *Server) serveLanding(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if host == "" {
		host = s.Addr().String()
	}
	data := struct{ Host, WebSocket, Fingerprint string }{Host: host}
	fingerprint := url.URL{Scheme: "https", Host: host, Path: transport.FingerprintPath}
	switch s.cfg.TCP {
	case TCPHTTP:
		data.WebSocket = "ws"
		fingerprint.Scheme = "http"
	case TCPHTTPS:
		data.WebSocket = "wss"
	}
	data.Fingerprint = fingerprint.String()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNotFound)
	if r.Method != http.MethodHead {
		_ = landingPage.Execute(w, data)
	}
}
