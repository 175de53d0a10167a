// Package version names this build of hotpatch. Patch files record it, so
// that a patch can be traced back to the tool that made it.
package version

// Version is the tool version. Release builds override it with
// -ldflags "-X github.com/hotpatch/hotpatch/internal/version.Version=...".
var Version = "0.1.0-dev"

// PatchFormat is the newest patch file format this build writes and reads.
const PatchFormat = "1.0"
