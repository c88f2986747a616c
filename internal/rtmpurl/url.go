// Package rtmpurl reads RTMP URLs as encoders and services write them
// (rtmp://host/app/STREAM-KEY) into the form gortmplib's client takes (the
// stream key in the fragment), and writes them for logs without the key.
// The RTMP sink (publishing) and the RTMP source's pull mode (playing)
// share it.
package rtmpurl

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Parse checks an rtmp:// or rtmps:// URL and returns it in
// the form gortmplib's Client takes: the stream key in the fragment.
//
// Services give the URL as the encoders (ffmpeg, OBS) read it:
// rtmp://a.rtmp.youtube.com/live2/KEY, rtmp://live.twitch.tv/app/KEY: the
// last path segment is the stream key (the name in the publish command),
// what precedes it the application (connect's app); a query belongs to the
// key. gortmplib sends the whole path as the application and the
// fragment as the key, so the key moves there. A URL that has a fragment
// already is taken as gortmplib's form (rtmp://host/app#KEY) and kept.
func Parse(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("rtmp: URL %q: %w", Redact(raw), errors.Unwrap(err))
	}
	if u.Scheme != "rtmp" && u.Scheme != "rtmps" {
		return nil, fmt.Errorf("rtmp: URL %q: the scheme must be rtmp:// or rtmps://", Redact(raw))
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("rtmp: URL %q has no host", Redact(raw))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("rtmp: URL %q: port %s out of range", Redact(raw), p)
		}
	}
	if u.Fragment != "" {
		return u, nil
	}
	p := strings.Trim(u.Path, "/")
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return nil, fmt.Errorf("rtmp: URL %q: want rtmp://HOST[:PORT]/APP/STREAM-KEY", Redact(raw))
	}
	n := *u
	n.Path, n.RawPath = "/"+p[:i], ""
	n.Fragment = p[i+1:]
	if u.RawQuery != "" {
		n.Fragment += "?" + u.RawQuery
		n.RawQuery = ""
	}
	n.RawFragment = ""
	return &n, nil
}

// Redact returns an RTMP URL fit for logs: the stream key (the last
// path segment, or the fragment) replaced by "<key>", without a password
// or query.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Keep what cannot be secret: the scheme and host, if any.
		if i := strings.Index(raw, "://"); i >= 0 {
			rest := raw[i+3:]
			if j := strings.IndexByte(rest, '/'); j >= 0 {
				return raw[:i+3] + rest[:j] + "/" + hidden
			}
		}
		return hidden
	}
	return RedactURL(u)
}

// RedactURL is Redact for a parsed URL.
func RedactURL(u *url.URL) string {
	var b strings.Builder
	b.WriteString(u.Scheme + "://")
	if u.User != nil {
		b.WriteString(u.User.Username() + "@")
	}
	b.WriteString(u.Host)
	p := strings.Trim(u.Path, "/")
	switch {
	case u.Fragment != "":
		b.WriteString("/" + p + "/" + hidden)
	case strings.Contains(p, "/"):
		b.WriteString("/" + p[:strings.LastIndexByte(p, '/')] + "/" + hidden)
	case p != "":
		b.WriteString("/" + p)
	}
	return b.String()
}

// hidden stands for a stream key in logs and messages.
const hidden = "<key>"
