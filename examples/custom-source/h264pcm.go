package main

import "encoding/binary"

// A minimal H.264 encoder for the test pattern: every frame is an IDR
// picture of I_PCM macroblocks, whose samples are stored as they are. That
// is large (about 1.8 Mbit/s at 160x96 and 10 fps) but plays everywhere
// and needs no codec library. A real source gets its frames from an
// encoder and needs none of this file.

// bitWriter writes the bit fields of H.264 headers (ITU-T H.264 §7.2).
type bitWriter struct {
	buf  []byte
	used int // bits used in the last byte of buf; 0: it is full, or there is none
}

// u writes the n low bits of v, most significant first.
func (w *bitWriter) u(n int, v uint32) {
	for i := n - 1; i >= 0; i-- {
		if w.used == 0 {
			w.buf = append(w.buf, 0)
		}
		if v>>i&1 == 1 {
			w.buf[len(w.buf)-1] |= 0x80 >> w.used
		}
		w.used = (w.used + 1) % 8
	}
}

// ue writes v as an unsigned Exp-Golomb code (se(0) is ue(0) too).
func (w *bitWriter) ue(v uint32) {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	w.u(n, 0)
	w.u(n+1, v)
}

// bytes writes whole bytes, after zero bits up to the next byte boundary.
func (w *bitWriter) bytes(b []byte) {
	w.used = 0
	w.buf = append(w.buf, b...)
}

// nal ends the NAL unit with rbsp_trailing_bits and returns it with
// emulation prevention bytes inserted (no 00 00 0x with x <= 3 inside).
func (w *bitWriter) nal() []byte {
	w.u(1, 1)
	out := make([]byte, 0, len(w.buf)+len(w.buf)/64)
	zeros := 0
	for _, b := range w.buf {
		if zeros >= 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// parameterSets returns the sequence and picture parameter sets of a
// Constrained Baseline stream of width x height (multiples of 16).
func parameterSets(width, height int) (sps, pps []byte) {
	s := &bitWriter{}
	s.u(8, 0x67)                // NAL header: SPS
	s.u(8, 66)                  // profile_idc: Baseline
	s.u(8, 0xc0)                // constraint_set0 and 1: Constrained Baseline
	s.u(8, 30)                  // level_idc: 3.0
	s.ue(0)                     // seq_parameter_set_id
	s.ue(0)                     // log2_max_frame_num_minus4
	s.ue(2)                     // pic_order_cnt_type 2: output order is decode order
	s.ue(1)                     // max_num_ref_frames
	s.u(1, 0)                   // gaps_in_frame_num_value_allowed_flag
	s.ue(uint32(width/16 - 1))  // pic_width_in_mbs_minus1
	s.ue(uint32(height/16 - 1)) // pic_height_in_map_units_minus1
	s.u(1, 1)                   // frame_mbs_only_flag
	s.u(1, 1)                   // direct_8x8_inference_flag
	s.u(1, 0)                   // frame_cropping_flag
	s.u(1, 0)                   // vui_parameters_present_flag

	p := &bitWriter{}
	p.u(8, 0x68) // NAL header: PPS
	p.ue(0)      // pic_parameter_set_id
	p.ue(0)      // seq_parameter_set_id
	p.u(1, 0)    // entropy_coding_mode_flag: CAVLC
	p.u(1, 0)    // bottom_field_pic_order_in_frame_present_flag
	p.ue(0)      // num_slice_groups_minus1
	p.ue(0)      // num_ref_idx_l0_default_active_minus1
	p.ue(0)      // num_ref_idx_l1_default_active_minus1
	p.u(1, 0)    // weighted_pred_flag
	p.u(2, 0)    // weighted_bipred_idc
	p.ue(0)      // pic_init_qp_minus26 (se)
	p.ue(0)      // pic_init_qs_minus26 (se)
	p.ue(0)      // chroma_qp_index_offset (se)
	p.u(1, 1)    // deblocking_filter_control_present_flag
	p.u(1, 0)    // constrained_intra_pred_flag
	p.u(1, 0)    // redundant_pic_cnt_present_flag
	return s.nal(), p.nal()
}

// idrPicture encodes one picture, given as 4:2:0 planes (y: width x height,
// cb and cr: half that each way), as an IDR slice of I_PCM macroblocks,
// length-prefixed (AVCC, 4-byte lengths) as the track's avcC declares.
func idrPicture(y, cb, cr []byte, width, height int, idrID uint32) []byte {
	w := &bitWriter{}
	w.u(8, 0x65) // NAL header: IDR slice
	w.ue(0)      // first_mb_in_slice
	w.ue(7)      // slice_type: I, every slice of the picture
	w.ue(0)      // pic_parameter_set_id
	w.u(4, 0)    // frame_num
	w.ue(idrID)  // idr_pic_id: differs between consecutive IDR pictures
	w.u(1, 0)    // no_output_of_prior_pics_flag
	w.u(1, 0)    // long_term_reference_flag
	w.ue(0)      // slice_qp_delta (se)
	w.ue(1)      // disable_deblocking_filter_idc: off
	mb := make([]byte, 0, 384)
	for my := 0; my < height/16; my++ {
		for mx := 0; mx < width/16; mx++ {
			w.ue(25) // mb_type: I_PCM
			mb = mb[:0]
			for row := range 16 {
				at := (my*16+row)*width + mx*16
				mb = append(mb, y[at:at+16]...)
			}
			for _, plane := range [][]byte{cb, cr} {
				for row := range 8 {
					at := (my*8+row)*(width/2) + mx*8
					mb = append(mb, plane[at:at+8]...)
				}
			}
			w.bytes(mb) // pcm samples, byte-aligned
		}
	}
	slice := w.nal()
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(slice)), uint32(len(slice))), slice...)
}
