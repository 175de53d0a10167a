// Command hotpatch builds live patches for C and C++ programs and applies
// them to running processes. See README.md and ARCHITECTURE.md.
package main

import (
	"os"

	"github.com/hotpatch/hotpatch/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
