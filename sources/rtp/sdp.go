package rtp

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/sdpunmarshaler"
	psdp "github.com/pion/sdp/v3"

	"github.com/moqbridge/moqbridge/sdk"
)

// maxSDPSize bounds the session descriptions ParseSDP accepts: real ones
// are a few hundred bytes.
const maxSDPSize = 64 << 10

// Session is a parsed session description: the media a sender sends, in
// the order of their m= lines.
type Session struct {
	Title  string
	Medias []Media
}

// Media is one m= line of a session description: where its packets come
// and what they carry.
type Media struct {
	// Index is the media's position in the SDP, from 0.
	Index int
	// Type is "video", "audio", …
	Type string
	// Addr is the address and port the RTP packets are sent to (the c= and
	// m= lines). The address may be unspecified (0.0.0.0, ::), a local
	// unicast address or a multicast group.
	Addr netip.AddrPort
	// RTCPPort is where the sender reports go: the a=rtcp attribute, or
	// the RTP port + 1.
	RTCPPort uint16
	// Sources restricts a multicast group to packets from these senders
	// (a=source-filter: incl); empty accepts any.
	Sources []netip.Addr
	// Format is the payload format the source decodes: the first of the
	// m= line's formats it supports.
	Format format.Format
}

// Describe names the media and its format for logs and errors.
func (m Media) Describe() string {
	return fmt.Sprintf("media %d (%s, %s)", m.Index+1, m.Type, formatName(m.Format))
}

// formatName is the rtpmap of a format ("H264/90000") with its payload type.
func formatName(f format.Format) string {
	if f == nil {
		return "no format"
	}
	rm := f.RTPMap()
	if rm == "" {
		rm = "static"
	}
	return fmt.Sprintf("%s, payload type %d", rm, f.PayloadType())
}

// ParseSDP parses a session description with gortsplib's SDP reader
// (tolerant of what cameras and encoders write) and its format
// descriptions, and checks that every media is RTP over UDP with a
// payload format the source supports. Its errors are permanent: no retry
// makes the description better.
func ParseSDP(text []byte) (*Session, error) {
	if len(text) > maxSDPSize {
		return nil, permanentf("rtp: the session description is %d bytes, more than %d", len(text), maxSDPSize)
	}
	sd, err := sdpParse(text)
	if err != nil {
		return nil, permanentf("rtp: parsing the session description: %w", err)
	}
	var desc description.Session
	if err := desc.Unmarshal2(sd); err != nil {
		return nil, permanentf("rtp: reading the session description: %w", err)
	}
	s := &Session{Title: desc.Title}
	var sessionAddr netip.Addr
	if sd.ConnectionInformation != nil {
		if sessionAddr, err = connAddr(sd.ConnectionInformation); err != nil {
			return nil, permanentf("rtp: the session's c= line: %w", err)
		}
	}
	sessionSources := sourceFilter(sd.Attributes)
	for i, md := range sd.MediaDescriptions {
		m := Media{Index: i, Type: md.MediaName.Media}
		fail := func(format string, args ...any) error {
			return permanentf("rtp: media %d (%s): %s", i+1, m.Type, fmt.Sprintf(format, args...))
		}
		if !isRTPOverUDP(md.MediaName.Protos) {
			return nil, fail("transport %q is not RTP over UDP (RTP/AVP)", strings.Join(md.MediaName.Protos, "/"))
		}
		addr := sessionAddr
		if md.ConnectionInformation != nil {
			if addr, err = connAddr(md.ConnectionInformation); err != nil {
				return nil, fail("c= line: %v", err)
			}
		}
		if !addr.IsValid() {
			return nil, fail("no connection address (c= line)")
		}
		port := md.MediaName.Port.Value
		if port <= 0 || port > 65535 {
			return nil, fail("port %d out of range", port)
		}
		m.Addr = netip.AddrPortFrom(addr, uint16(port))
		m.RTCPPort = uint16(port + 1)
		if v, ok := md.Attribute("rtcp"); ok {
			p, _, _ := strings.Cut(strings.TrimSpace(v), " ")
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return nil, fail("a=rtcp:%s is not a port", v)
			}
			m.RTCPPort = uint16(n)
		}
		m.Sources = sessionSources
		if src := sourceFilter(md.Attributes); src != nil {
			m.Sources = src
		}
		m.Format, err = pickFormat(desc.Medias[i].Formats)
		if err != nil {
			return nil, fail("%v", err)
		}
		s.Medias = append(s.Medias, m)
	}
	return s, nil
}

// sdpParse runs gortsplib's SDP unmarshaler, which is tolerant of the
// deviations real senders make, and turns its panics (it is not meant for
// hostile input) into errors.
func sdpParse(text []byte) (sd *psdp.SessionDescription, err error) {
	defer func() {
		if r := recover(); r != nil {
			sd, err = nil, fmt.Errorf("malformed session description (%v)", r)
		}
	}()
	return sdpunmarshaler.Unmarshal(text)
}

func isRTPOverUDP(protos []string) bool {
	if len(protos) < 2 || protos[0] != "RTP" {
		return false
	}
	// RTP/AVP, RTP/AVPF: plain RTP. RTP/SAVP needs keys the source does not have.
	return protos[1] == "AVP" || protos[1] == "AVPF"
}

// connAddr reads the address of a c= line; a multicast address may carry
// a TTL and a count ("239.1.1.1/32"), of which the source uses the
// address.
func connAddr(c *psdp.ConnectionInformation) (netip.Addr, error) {
	if c.NetworkType != "IN" {
		return netip.Addr{}, fmt.Errorf("network type %q is not IN", c.NetworkType)
	}
	if c.Address == nil {
		return netip.Addr{}, errors.New("no address")
	}
	host, _, _ := strings.Cut(c.Address.Address, "/") // a multicast TTL or count
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q is not an IP address", c.Address.Address)
	}
	switch {
	case c.AddressType == "IP4" && !a.Is4():
		return netip.Addr{}, fmt.Errorf("%s is not an IPv4 address", a)
	case c.AddressType == "IP6" && !a.Is6():
		return netip.Addr{}, fmt.Errorf("%s is not an IPv6 address", a)
	case c.AddressType != "IP4" && c.AddressType != "IP6":
		return netip.Addr{}, fmt.Errorf("address type %q is neither IP4 nor IP6", c.AddressType)
	}
	return a, nil
}

// sourceFilter reads the senders of "a=source-filter: incl IN IP4 <dest>
// <src> …" (RFC 4570); exclusion filters and unreadable ones are ignored.
func sourceFilter(attrs []psdp.Attribute) []netip.Addr {
	var out []netip.Addr
	for _, a := range attrs {
		if a.Key != "source-filter" {
			continue
		}
		f := strings.Fields(a.Value)
		if len(f) < 5 || f[0] != "incl" || f[1] != "IN" {
			continue
		}
		for _, s := range f[4:] {
			if ip, err := netip.ParseAddr(s); err == nil {
				out = append(out, ip)
			}
		}
	}
	return out
}

// supportedFormats names the payload formats the source reads, for errors.
const supportedFormats = "H264, H265, AV1, VP8, VP9, opus, mpeg4-generic and MP4A-LATM (AAC), PCMU and PCMA (G.711)"

// pickFormat returns the first of a media's formats the source supports.
func pickFormat(fs []format.Format) (format.Format, error) {
	for _, f := range fs {
		if supported(f) {
			return f, nil
		}
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = formatName(f)
	}
	return nil, fmt.Errorf("payload format %s is not supported (supported: %s)", strings.Join(names, "; "), supportedFormats)
}

func supported(f format.Format) bool {
	switch f := f.(type) {
	case *format.H264:
		return f.PacketizationMode == 0 || f.PacketizationMode == 1
	case *format.H265, *format.AV1, *format.VP8, *format.VP9, *format.Opus, *format.G711:
		return true
	case *format.MPEG4Audio:
		return f.Config != nil && f.SizeLength > 0
	case *format.MPEG4AudioLATM:
		return f.CPresent == false && f.StreamMuxConfig != nil && len(f.StreamMuxConfig.Programs) > 0 &&
			len(f.StreamMuxConfig.Programs[0].Layers) > 0 && f.StreamMuxConfig.Programs[0].Layers[0].AudioSpecificConfig != nil
	}
	return false
}

// permanentf is a formatted error no retry cures (sdk.Permanent).
func permanentf(format string, args ...any) error {
	return sdk.Permanent(fmt.Errorf(format, args...))
}
