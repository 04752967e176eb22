# debian-mirror.sh: sourced by fetch-kernel.sh and build-kernel.sh (find_mirror, private_apt).
# find_mirror prints the Debian mirror to download from: $DEBIAN_MIRROR, else the first URI ending in
# /debian in the host's apt sources (deb822 .sources files, then one-line .list files), read at run
# time so that no mirror is named in the repository. It fails with a message when there is none.
find_mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
	local f u
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		u=$(awk 'tolower($1)=="uris:" {for (i=2;i<=NF;i++) print $i}' "$f" | grep -E '/debian/?$' | head -n1 || true)
		if [ -n "$u" ]; then echo "${u%/}"; return; fi
	done
	u=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }' |
		grep -E '/debian/?$' | head -n1 || true)
	if [ -n "$u" ]; then echo "${u%/}"; return; fi
	echo "$(basename "$0"): no Debian mirror found in host apt sources; set DEBIAN_MIRROR" >&2
	return 1
}

# private_apt APTDIR SUITE: a sources list for SUITE under APTDIR and, in APT_OPTS, the apt-get /
# apt-cache options that use it with their own lists and cache, then an update. The host's apt
# configuration is never read or changed beyond its mirror.
private_apt() {
	local dir=$1 suite=$2 mirror
	mirror=$(find_mirror) || return 1
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" > "$dir/sources.list"
	APT_OPTS=(-o Dir::Etc::SourceList="$dir/sources.list"
		-o Dir::Etc::SourceParts=/dev/null
		-o Dir::State::Lists="$dir/lists"
		-o Dir::Cache="$dir/cache"
		-o APT::Architecture=amd64
		-o APT::Sandbox::User=root)
	apt-get "${APT_OPTS[@]}" -qq update
}
