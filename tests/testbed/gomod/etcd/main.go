// etcd built from the upstream go.etcd.io/etcd/server/v3 module (see build-binaries.sh).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
