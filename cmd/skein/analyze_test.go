package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestAnalyzeExitCodes(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"analyze", "../../internal/analyze/testdata/clean"}, 0, "No problems found."},
		{[]string{"analyze", "../../internal/analyze/testdata/security"}, exitAnalyzeFindings, "[SK0106]"},
		{[]string{"analyze", "--failure-threshold", "Warning", "../../internal/analyze/testdata/security"}, exitAnalyzeFindings, "[SK0101]"},
		{[]string{"analyze", "-o", "json", "../../internal/analyze/testdata/clean"}, 0, "[]"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			cmd := newRootCmd()
			cmd.SetOut(&out)
			cmd.SetArgs(tt.args)
			err := cmd.Execute()
			code := 0
			if err != nil {
				var ee *exitError
				if !errors.As(err, &ee) {
					t.Fatalf("error %v", err)
				}
				code = ee.code
			}
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output %q, want it to contain %q", out.String(), tt.wantOut)
			}
		})
	}
}
