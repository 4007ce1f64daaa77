// Command etcd is the etcd server built from the pinned go.etcd.io/etcd/server/v3
// module. etcd's own main module carries replace directives, so `go install` refuses
// it; this wrapper calls the same entry point. Built by scripts/build-cluster-tools.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
