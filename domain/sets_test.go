package domain

import (
	"errors"
	"reflect"
	"testing"
)

func TestNormalizeWords(t *testing.T) {
	tests := []struct {
		name    string
		raw     []string
		want    []string
		wantErr bool
	}{
		{name: "none_is_nil", raw: nil, want: nil},
		{name: "trimmed_lowered_sorted_deduped", raw: []string{" Ransomware", "apt29", "RANSOMWARE "}, want: []string{"apt29", "ransomware"}},
		{name: "empty_refused", raw: []string{"ok", "  "}, wantErr: true},
		{name: "too_long_refused", raw: []string{"abcdefghijk"}, wantErr: true},
		{name: "control_character_refused", raw: []string{"a\x00b"}, wantErr: true},
		{name: "invalid_utf8_refused", raw: []string{"a\xffb"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeWords(tt.raw, 10, "tag_invalid", "tag")
			if tt.wantErr {
				var de *Error
				if !errors.As(err, &de) || de.Kind != KindInvalid || de.Code != "tag_invalid" {
					t.Fatalf("err = %v, want an invalid tag_invalid", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
