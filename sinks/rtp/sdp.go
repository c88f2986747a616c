package rtp

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	psdp "github.com/pion/sdp/v3"
)

// sessionSDP writes the session description of the streams: one m= line
// per stream, at its destination port, with the c= line of the
// destination (a multicast group with its TTL) and the rtpmap and fmtp
// lines of its gortsplib format. gortsplib marshals each media's formats;
// the session is assembled with pion/sdp (gortsplib's Session.Marshal
// writes RTSP descriptions, without ports or addresses).
func sessionSDP(name string, id, version uint64, dest netip.AddrPort, ttl int, tracks []*outTrack) ([]byte, error) {
	addrType, addr := "IP4", dest.Addr().Unmap()
	if addr.Is6() {
		addrType = "IP6"
	}
	conn := addr.String()
	if addr.IsMulticast() && addr.Is4() {
		// RFC 4566 5.7: an IPv4 multicast address carries its TTL (IPv6
		// has none in the c= line).
		conn += "/" + strconv.Itoa(ttl)
	}
	origin := "127.0.0.1"
	if addr.Is6() {
		origin = "::1"
	}
	sd := &psdp.SessionDescription{
		Origin: psdp.Origin{Username: "-", SessionID: id, SessionVersion: version,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: origin},
		SessionName: psdp.SessionName(name),
		ConnectionInformation: &psdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType,
			Address: &psdp.Address{Address: conn}},
		TimeDescriptions: []psdp.TimeDescription{{Timing: psdp.Timing{}}},
		Attributes:       []psdp.Attribute{{Key: "tool", Value: "moqbridge"}},
	}
	for i, o := range tracks {
		typ := description.MediaTypeAudio
		if o.video() {
			typ = description.MediaTypeVideo
		}
		md, err := description.Media{Type: typ, Formats: []format.Format{o.format}}.Marshal()
		if err != nil {
			return nil, fmt.Errorf("rtp: the SDP of %s: %w", o.codec, err)
		}
		// Drop the RTSP control attribute gortsplib adds.
		attrs := md.Attributes[:0]
		for _, a := range md.Attributes {
			if a.Key != "control" {
				attrs = append(attrs, a)
			}
		}
		md.Attributes = attrs
		md.MediaName.Port = psdp.RangedPort{Value: int(dest.Port()) + 2*i}
		sd.MediaDescriptions = append(sd.MediaDescriptions, md)
	}
	return sd.Marshal()
}

// writeFileAtomic writes data to name through a temporary file in the
// same directory and a rename, so that a reader never sees half a file.
func writeFileAtomic(name string, data []byte) error {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
