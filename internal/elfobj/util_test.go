package elfobj

import (
	"encoding/binary"
	"os"
)

var nativeOrder = binary.LittleEndian

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
