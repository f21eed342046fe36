#!/usr/bin/env bash
# oci-relay.sh VERSION OUTDIR: builds the relay's container image as an OCI
# image layout, OUTDIR/hubrelay-oci (one manifest per architecture of
# ARCHS, Go's names: amd64 arm64 arm; default "amd64 arm64"), and the same
# as one file, OUTDIR/hubrelay-VERSION.oci.tar. No container engine is
# needed: the image is the static binary, the CA certificates (for ACME) and
# two folders, written with tar, gzip and sha256sum. Push it with skopeo:
#   skopeo copy oci-archive:dist/hubrelay-V.oci.tar docker://REGISTRY/hubrelay:V
# Runs as user 65532; state in the volume /var/lib/hubrelay, the config
# mounted at /etc/hubrelay/relay.toml (README.md, "Running a relay").
set -euo pipefail
GO=${GO:-go}
version=${1:?usage: oci-relay.sh VERSION OUTDIR}
out=${2:?usage: oci-relay.sh VERSION OUTDIR}
archs=${ARCHS:-"amd64 arm64"}
cacerts=/etc/ssl/certs/ca-certificates.crt
[ -r "$cacerts" ] || { echo "oci-relay: $cacerts missing (Debian package ca-certificates)" >&2; exit 1; }

layout=$out/hubrelay-oci
rm -rf "$layout"
mkdir -p "$layout/blobs/sha256"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# blob FILE: stores FILE as a blob, prints its digest and size.
blob() {
	local d
	d=$(sha256sum "$1" | cut -d' ' -f1)
	cp "$1" "$layout/blobs/sha256/$d"
	echo "sha256:$d $(stat -c %s "$1")"
}

manifests=()
for arch in $archs; do
	goarm= platform_variant=
	case "$arch" in
	amd64 | arm64) ;;
	arm) goarm=7 platform_variant=',"variant":"v7"' ;;
	*) echo "oci-relay: unknown architecture $arch" >&2; exit 2 ;;
	esac
	root=$tmp/$arch/root
	install -d -m 0755 "$root/usr/bin" "$root/etc/ssl/certs" "$root/etc/hubrelay"
	install -d -m 0700 "$root/var/lib/hubrelay"
	install -d -m 1777 "$root/tmp"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=$goarm "$GO" build -trimpath \
		-ldflags "-s -w -X github.com/hubtunnel/hubtunnel/version.Version=$version" \
		-o "$root/usr/bin/hubrelay" ./cmd/hubrelay
	install -m 0644 "$cacerts" "$root/etc/ssl/certs/ca-certificates.crt"
	# Owned by root but the state folder, the nonroot user's; the same
	# bytes for the same inputs (sorted, no times, no names of this host).
	tar --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 --format=posix \
		--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		-C "$root" --exclude=./var/lib/hubrelay -cf "$tmp/$arch/layer.tar" .
	tar --sort=name --mtime=@0 --numeric-owner --owner=65532 --group=65532 --format=posix \
		--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		-C "$root" -rf "$tmp/$arch/layer.tar" ./var/lib/hubrelay
	diffid=$(sha256sum "$tmp/$arch/layer.tar" | cut -d' ' -f1)
	gzip -9 -n <"$tmp/$arch/layer.tar" >"$tmp/$arch/layer.tar.gz"
	read -r layer_digest layer_size < <(blob "$tmp/$arch/layer.tar.gz")

	cat >"$tmp/$arch/config.json" <<CONFIG
{"architecture":"$arch"$platform_variant,"os":"linux","config":{"User":"65532:65532","Entrypoint":["/usr/bin/hubrelay"],"Cmd":["run","--config","/etc/hubrelay/relay.toml"],"Env":["PATH=/usr/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"WorkingDir":"/var/lib/hubrelay","ExposedPorts":{"80/tcp":{},"443/tcp":{},"7443/tcp":{},"7443/udp":{}},"Volumes":{"/var/lib/hubrelay":{}},"Labels":{"org.opencontainers.image.title":"hubrelay","org.opencontainers.image.version":"$version","org.opencontainers.image.source":"https://github.com/hubtunnel/hubtunnel"}},"rootfs":{"type":"layers","diff_ids":["sha256:$diffid"]},"history":[{"created_by":"scripts/oci-relay.sh $version"}]}
CONFIG
	read -r config_digest config_size < <(blob "$tmp/$arch/config.json")
	cat >"$tmp/$arch/manifest.json" <<MANIFEST
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$layer_digest","size":$layer_size}]}
MANIFEST
	read -r m_digest m_size < <(blob "$tmp/$arch/manifest.json")
	manifests+=("{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$m_digest\",\"size\":$m_size,\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"$platform_variant},\"annotations\":{\"org.opencontainers.image.ref.name\":\"$version\"}}")
done

printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
(
	IFS=,
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "${manifests[*]}"
) >"$layout/index.json"
tar --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -C "$layout" -cf "$out/hubrelay-$version.oci.tar" .
echo "$layout"
echo "$out/hubrelay-$version.oci.tar"
