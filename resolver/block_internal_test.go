package resolver

import "testing"

func TestApexName(t *testing.T) {
	for _, tc := range []struct{ qname, apex, want string }{
		{"a.Tracker.Example.", "tracker.example", "tracker.example."}, // the rule's spelling
		{"tracker.example.", "tracker.example", "tracker.example."},
		{"atracker.example.", "tracker.example", "tracker.example."}, // not a whole-label suffix
		{"a.tracker.example.", "tracker.example.", "tracker.example."},
		{"a.b.", "", "."},
		{"x.", "other.example", "other.example."}, // shorter than the apex
	} {
		if got := apexName(tc.qname, tc.apex); got != tc.want {
			t.Errorf("apexName(%q, %q) = %q, want %q", tc.qname, tc.apex, got, tc.want)
		}
	}
}
