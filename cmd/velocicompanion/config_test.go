package main

import (
	"flag"
	"fmt"
	"io"
	"testing"
	"time"
)

// TestNetworkSettings reads the allowed networks of SIEM destinations and
// Velociraptor servers from flags, and refuses what is not a private CIDR.
func TestNetworkSettings(t *testing.T) {
	tests := []struct {
		args    []string
		siem    string
		vr      string
		wantErr bool
	}{
		{args: nil, siem: "[]", vr: "[]"},
		{args: []string{"--velociraptor-allowed-networks", " 10.20.0.0/16, 192.168.1.0/24 "}, siem: "[]", vr: "[10.20.0.0/16 192.168.1.0/24]"},
		{args: []string{"--siem-allowed-networks", "127.0.0.0/8"}, siem: "[127.0.0.0/8]", vr: "[]"},
		{args: []string{"--velociraptor-allowed-networks", "not-a-cidr"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.args), func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c, err := loadConfig(fs, tt.args)
			if tt.wantErr {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(c.SIEMAllowedNetworks); got != tt.siem {
				t.Errorf("SIEM networks %s, want %s", got, tt.siem)
			}
			if got := fmt.Sprint(c.VRAllowedNetworks); got != tt.vr {
				t.Errorf("Velociraptor networks %s, want %s", got, tt.vr)
			}
			if !c.VRJobs || c.VRPoll != 5*time.Second || c.VRSyncInterval != 5*time.Minute {
				t.Errorf("Velociraptor defaults: jobs %v, poll %s, sync %s", c.VRJobs, c.VRPoll, c.VRSyncInterval)
			}
		})
	}
}
