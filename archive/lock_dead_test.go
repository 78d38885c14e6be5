//go:build unix

package archive

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

func TestHolderDead(t *testing.T) {
	host, _ := os.Hostname()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if !holderDead(fmt.Sprintf("%s/%d/abcd", host, dead.Process.Pid)) {
		t.Error("a finished process of this host is not seen as dead")
	}
	for _, h := range []string{fmt.Sprintf("%s/%d/abcd", host, os.Getpid()), fmt.Sprintf("other-host/%d/abcd", dead.Process.Pid), "garbage", host + "/x/y"} {
		if holderDead(h) {
			t.Errorf("holder %q seen as dead", h)
		}
	}
}
