module github.com/hubtunnel/hubtunnel

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/miekg/dns v1.1.73
	golang.org/x/crypto v0.54.0
	golang.org/x/sys v0.47.0
	golang.zx2c4.com/wireguard v0.0.0-20260522210424-ecfc5a8d5446
	gvisor.dev/gvisor v0.0.0-20250503011706-39ed1f5ac29c
)

require (
	github.com/google/btree v1.1.2 // indirect
	golang.org/x/net v0.57.0 // indirect
	golang.org/x/time v0.7.0 // indirect
	golang.zx2c4.com/wintun v0.0.0-20230126152724-0fa3db229ce2 // indirect
)
