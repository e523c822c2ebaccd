#!/usr/bin/env bash
# Builds the reproducible test base for pibake's boot tests: Debian in exactly the Raspberry Pi OS
# Lite layout and first-boot contract (see docs/testing.md and the raspios contract):
#   MBR; p1 FAT32 "bootfs" at sector 16384 (512 MiB, type 0x0c) holding vmlinuz, initrd.img,
#   cmdline.txt, config.txt; p2 ext4 "rootfs" (type 0x83, last); PARTUUID=<diskid>-01/-02 in
#   /etc/fstab and cmdline.txt; /etc/machine-id "uninitialized"; apt sources as Lite has them.
# What Lite has that matters to pibake, and none of the role packages (haproxy, postgresql, nginx):
#   trixie (default): Debian 13, cloud-init 25 with Raspberry Pi OS's 99_raspberry-pi.cfg (NoCloud
#     seeds on /boot/firmware), netplan.io rendered by NetworkManager, deb822 debian.sources.
#   bookworm (--suite bookworm): Debian 12, NetworkManager, no cloud-init (Imager's firstrun.sh
#     through systemd.run is the first boot), one-line sources.list.
# Both: openssh-server, sudo, locales (en_GB.UTF-8), python3, a kernel and initrd for qemu.
#
# Everything is assembled without loop devices or mounts (sfdisk on the file, mkfs.vfat --offset,
# mcopy -i img@@off, mke2fs -d DIR -E offset=N). As root mmdebstrap uses its root mode; as another
# user its unshare mode (needs subuids), and the ext4 is filled inside the same user namespace.
#
# The result is cached by content: its name carries a hash of this script, the suite and the
# architecture, so it is built once per machine (and again only when this file changes). The .deb
# files are cached beside it. Prints the cached image's path (or --out FILE's) as the last stdout line.
#
# usage: scripts/make-test-base.sh [--suite trixie|bookworm] [--arch amd64|arm64] [--out FILE] [--force]
set -euo pipefail

log() { printf 'make-test-base: %s\n' "$*" >&2; }

# Runs as mmdebstrap's last customize hook, on the host, with the finished chroot as $1:
# the Raspberry Pi OS first-boot contract, then the initramfs (built once, small).
customize() {
  local root=$1 id=$2 arch=$3 modules=$4 suite=$5 hash=$6
  local console=tty1 firstboot
  if [ "$suite" = bookworm ]; then firstboot=firstrun; else firstboot=cloud-init; fi
  cat >"$root/etc/fstab" <<EOF
proc            /proc           proc    defaults          0       0
PARTUUID=$id-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=$id-02  /               ext4    defaults,noatime  0       1
EOF
  mkdir -p "$root/boot/firmware"
  # net.ifnames=0: the NIC is eth0 under qemu as on a Pi. Raspberry Pi OS's own ` resize` (trixie)
  # or `init=.../firstboot` (bookworm) is absent: their initramfs and scripts are not Debian's.
  echo "console=$console root=PARTUUID=$id-02 rootfstype=ext4 fsck.repair=yes rootwait net.ifnames=0" \
    >"$root/boot/firmware/cmdline.txt"
  cat >"$root/boot/firmware/config.txt" <<EOF
# pibake test base: Debian $suite ($arch) in the Raspberry Pi OS layout, booted by qemu's direct
# kernel boot (vmlinuz, initrd.img, cmdline.txt from this partition). Not a Pi firmware config.
kernel=vmlinuz
initramfs initrd.img followkernel
EOF
  echo "pibake test base $hash: Debian $suite $arch, Raspberry Pi OS Lite layout, $firstboot first boot (scripts/make-test-base.sh)" \
    >"$root/boot/firmware/issue.txt"
  cat >"$root/etc/pibake-test-base" <<EOF
# Marks a pibake test base (scripts/make-test-base.sh): Debian, not Raspberry Pi OS.
# First boot works like Raspberry Pi OS Lite $suite: $firstboot.
PIBAKE_TEST_BASE=$hash
FIRSTBOOT=$firstboot
DEBIAN_SUITE=$suite
ARCH=$arch
EOF

  echo raspberrypi >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\traspberrypi\n' >"$root/etc/hosts"
  # NetworkManager writes resolv.conf itself (Raspberry Pi OS ships a plain file, pi-gen export-image).
  rm -f "$root/etc/resolv.conf"
  : >"$root/etc/resolv.conf"
  # Like pi-gen: en_GB.UTF-8 generated and the default. (Debian's locale-gen ignores the locale
  # cloud-init passes it, so a locale that is not generated in the image makes cc_locale fail.)
  sed -i 's/^# *\(en_GB.UTF-8 UTF-8\)/\1/' "$root/etc/locale.gen"
  chroot "$root" locale-gen >&2
  echo LANG=en_GB.UTF-8 >"$root/etc/default/locale"
  # First boot is detected by this value; a baked machine-id would make every card the same machine.
  echo uninitialized >"$root/etc/machine-id"   # emptied by mmdebstrap's cleanup; rewritten after it
  rm -f "$root/var/lib/dbus/machine-id"

  # apt sources as Raspberry Pi OS Lite has them (pi-gen stage0/00-configure-apt): trixie has an
  # empty sources.list and deb822 debian.sources with Signed-By; bookworm one-line sources.list
  # with the keys in trusted.gpg.d. (Raspberry Pi's own archive is left out: this is Debian, and
  # archive.raspberrypi.com does not answer everywhere; pibake's unit tests cover raspi.sources.)
  rm -f "$root"/etc/apt/sources.list.d/*
  if [ "$suite" = bookworm ]; then
    cat >"$root/etc/apt/sources.list" <<EOF
deb http://deb.debian.org/debian $suite main contrib non-free non-free-firmware
deb http://deb.debian.org/debian-security/ $suite-security main contrib non-free non-free-firmware
deb http://deb.debian.org/debian $suite-updates main contrib non-free non-free-firmware
EOF
  else
    : >"$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian/
Suites: $suite $suite-updates
Components: main contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp

Types: deb
URIs: http://deb.debian.org/debian-security/
Suites: $suite-security
Components: main contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp
EOF
  fi

  if [ "$suite" != bookworm ]; then
    # cloud-init exactly as Raspberry Pi OS trixie configures it (rpi-cloud-init-mods).
    cat >"$root/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg" <<EOF
datasource_list: [ NoCloud, None ]
datasource:
  NoCloud:
    seedfrom: file:///boot/firmware
ssh_deletekeys: false
ssh_genkeytypes: []
EOF
    # netplan renders for NetworkManager, as on Raspberry Pi OS: cloud-init writes the seed's
    # network-config to /etc/netplan/50-cloud-init.yaml, and this file (read first) makes
    # NetworkManager the renderer of every definition that names none.
    mkdir -p "$root/etc/netplan"
    printf 'network:\n  version: 2\n  renderer: NetworkManager\n' >"$root/etc/netplan/01-network-manager-all.yaml"
    chmod 600 "$root/etc/netplan/01-network-manager-all.yaml"
    # The seeds live on the boot partition: cloud-init's local stage must wait for its mount.
    for unit in cloud-init-main cloud-init-local; do
      mkdir -p "$root/etc/systemd/system/$unit.service.d"
      printf '[Unit]\nRequiresMountsFor=/boot/firmware\n' >"$root/etc/systemd/system/$unit.service.d/10-boot-firmware.conf"
    done
  fi

  # No host keys in the image (every card would share them). Keys baked by pibake are kept;
  # otherwise they are generated on first boot, as Raspberry Pi OS does.
  rm -f "$root"/etc/ssh/ssh_host_*
  cat >"$root/etc/systemd/system/ssh-hostkeys-if-missing.service" <<EOF
[Unit]
Description=Generate SSH host keys if the image has none
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
  chroot "$root" systemctl enable ssh-hostkeys-if-missing.service NetworkManager.service >/dev/null 2>&1

  # The initramfs, once, with just what qemu's virtio disk and the root file system need.
  rm -f "$root/usr/sbin/update-initramfs"
  chroot "$root" dpkg-divert --quiet --local --rename --divert /usr/sbin/update-initramfs.pibake \
    --remove /usr/sbin/update-initramfs
  printf '%s\n' $modules >>"$root/etc/initramfs-tools/modules"
  echo MODULES=list >"$root/etc/initramfs-tools/conf.d/pibake-test-base.conf"
  chroot "$root" update-initramfs -c -k all >&2
}
if [ "${1:-}" = __customize ]; then
  shift
  customize "$@"
  exit 0
fi

suite=trixie
arch=amd64
out=
force=0
usage='--suite trixie|bookworm --arch amd64|arm64 --out FILE --force'
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) suite=${2:?--suite needs trixie or bookworm}; shift 2 ;;
    --suite=*) suite=${1#--suite=}; shift ;;
    --arch) arch=${2:?--arch needs amd64 or arm64}; shift 2 ;;
    --arch=*) arch=${1#--arch=}; shift ;;
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-test-base: unknown argument $1 (hint: $usage)" >&2; exit 2 ;;
  esac
done
case "$arch" in amd64|arm64) ;; *) echo "make-test-base: --arch must be amd64 or arm64, not $arch" >&2; exit 2 ;; esac
case "$suite" in trixie|bookworm) ;; *) echo "make-test-base: --suite must be trixie or bookworm, not $suite" >&2; exit 2 ;; esac

# What the image contains. Changing anything in this file changes the hash, hence the cache name.
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
packages=(
  "linux-image-cloud-$arch" initramfs-tools systemd-sysv udev dbus kmod e2fsprogs dosfstools
  iproute2 netbase procps less locales tzdata keyboard-configuration console-setup systemd-timesyncd
  ca-certificates debian-archive-keyring network-manager openssh-server sudo python3
)
# Raspberry Pi OS trixie Lite first boots with cloud-init and netplan; bookworm Lite has neither.
[ "$suite" = bookworm ] || packages+=(cloud-init netplan.io)
boot_mib=512           # size of p1, as in Raspberry Pi OS
boot_start=16384       # sector of p1 (Raspberry Pi OS builds since 2025-03)
# Free space in the root file system: used * 1.2 + this. Lite leaves a few hundred MB (its first
# boot grows the partition, which qemu's direct kernel boot does not do): enough for the load
# balancer's packages, not for the web node's, so the boot tests also prove pibake growing the image.
root_headroom_mib=64
initramfs_modules=(virtio_pci virtio_mmio virtio_blk virtio_net ext4 vfat nls_cp437 nls_ascii)

self=$(readlink -f "$0")
hash=$( { cat "$self"; echo "suite=$suite arch=$arch"; } | sha256sum | cut -c1-16)
cache_root=${PIBAKE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pibake}
cache=$cache_root/test-base
image=$cache/debian-$suite-$arch-$hash.img
debs=$cache/debs-$suite-$arch
# Raspberry Pi OS ships one fixed disk id per release; ours is derived from the content hash.
disk_id=${hash:0:8}

deliver() {
  if [ -n "$out" ]; then
    mkdir -p "$(dirname "$out")"
    cp --reflink=auto --sparse=always "$image" "$out"
    echo "$out"
  else
    echo "$image"
  fi
}

mkdir -p "$cache" "$debs"
exec 9>"$cache/.lock-$suite-$arch"
flock 9   # one build per machine and arch at a time; a second caller waits, then finds it cached
if [ -f "$image" ] && [ "$force" = 0 ]; then
  log "cached: $image"
  deliver
  exit 0
fi

for tool in mmdebstrap sfdisk mkfs.vfat mcopy mmd mke2fs e2fsck fsck.vfat; do
  command -v "$tool" >/dev/null || { log "$tool is missing (hint: bash scripts/install-debian-deps.sh)"; exit 1; }
done
if [ "$arch" != "$(dpkg --print-architecture)" ] && ! arch-test "$arch" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
    update-binfmts --enable >/dev/null 2>&1 || true
  fi
  arch-test "$arch" >/dev/null 2>&1 || {
    log "cannot run $arch binaries (hint: apt-get install qemu-user-static binfmt-support arch-test, and mount binfmt_misc)"; exit 1; }
fi

started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/pibake-test-base.XXXXXX")
rootfs=$work/rootfs
partial=$image.partial
cleanup() {
  if [ -d "$rootfs" ] && [ "$(id -u)" != 0 ]; then mmdebstrap --unshare-helper rm -rf "$rootfs" || true; fi
  rm -rf "$work" "$partial"
}
trap cleanup EXIT

if [ "$(id -u)" = 0 ]; then mode=root; else mode=unshare; fi
mkdir "$rootfs"

log "building $suite/$arch with mmdebstrap ($mode mode) into $rootfs"
# update-initramfs is diverted to a no-op while packages install and run once at the end with a
# short module list: under qemu-user (arm64) it otherwise runs twice and costs half an hour.
mmdebstrap \
  --mode="$mode" --variant=apt --architectures="$arch" \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --skip=download/empty --skip=essential/unlink \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $debs /var/cache/apt/archives/" \
  --essential-hook='chroot "$1" dpkg-divert --quiet --local --no-rename --divert /usr/sbin/update-initramfs.pibake --add /usr/sbin/update-initramfs' \
  --essential-hook='printf "#!/bin/sh\nexit 0\n" > "$1/usr/sbin/update-initramfs" && chmod 755 "$1/usr/sbin/update-initramfs"' \
  --customize-hook="sync-out /var/cache/apt/archives $debs" \
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
  --customize-hook="\"$self\" __customize \"\$1\" $disk_id $arch '${initramfs_modules[*]}' $suite $hash" \
  "$suite" "$rootfs" "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" >&2
log "packages installed after $(( $(date +%s) - started )) s"

# Runs a command with the chroot's ownership: directly as root, in mmdebstrap's namespace otherwise.
as_owner() { if [ "$mode" = root ]; then "$@"; else mmdebstrap --unshare-helper "$@"; fi; }
# mmdebstrap's cleanup empties /etc/machine-id after the hooks; Raspberry Pi OS ships "uninitialized".
as_owner sh -c 'echo uninitialized >"$1/etc/machine-id"' sh "$rootfs"

# --- assembly: no loop device, no mount ---------------------------------------------------------
kernel=$(cd "$rootfs/boot" && ls vmlinuz-* | sort -V | tail -1)
initrd=initrd.img-${kernel#vmlinuz-}
used_kib=$(as_owner du -sk "$rootfs" | cut -f1)
root_mib=$(( used_kib * 12 / 10 / 1024 + root_headroom_mib ))
boot_sectors=$(( boot_mib * 2048 ))
root_start=$(( boot_start + boot_sectors ))
root_sectors=$(( root_mib * 2048 ))
total_bytes=$(( (root_start + root_sectors) * 512 ))
log "rootfs uses $(( used_kib / 1024 )) MiB; partition 2 gets $root_mib MiB"

rm -f "$partial"
truncate -s "$total_bytes" "$partial"
sfdisk --quiet --no-reread --no-tell-kernel "$partial" <<EOF
label: dos
label-id: 0x$disk_id
unit: sectors
start=$boot_start, size=$boot_sectors, type=c
start=$root_start, size=$root_sectors, type=83
EOF

# p1: FAT32, 1 sector per cluster, label bootfs, like pi-gen's mkdosfs -F 32.
mkfs.vfat --offset "$boot_start" -F 32 -s 1 -S 512 -n bootfs -i "${hash:8:8}" "$partial" $(( boot_sectors / 2 )) >/dev/null
boot="$partial@@$(( boot_start * 512 ))"
mcopy -i "$boot" "$rootfs/boot/firmware/cmdline.txt" "$rootfs/boot/firmware/config.txt" "$rootfs/boot/firmware/issue.txt" ::/
mcopy -i "$boot" "$rootfs/boot/$kernel" ::/vmlinuz
mcopy -i "$boot" "$rootfs/boot/$initrd" ::/initrd.img

# p2: ext4 filled from the tree; the mount point /boot/firmware stays empty in it.
as_owner sh -c 'rm -f "$1"/boot/firmware/*' sh "$rootfs"
mkroot=(mke2fs -q -F -t ext4 -O ^64bit,^huge_file -L rootfs
  -U "${hash:0:8}-${hash:8:4}-4${hash:13:3}-8${hash:1:3}-${hash:4:12}"
  -E "offset=$(( root_start * 512 ))" -d "$rootfs" "$partial" "${root_mib}M")
as_owner "${mkroot[@]}"

# Check both file systems before the image enters the cache (fsck.vfat takes no offset: check a
# sparse copy of the partition).
dd if="$partial" of="$work/bootfs.img" bs=1M skip=$(( boot_start / 2048 )) count="$boot_mib" conv=sparse status=none
fsck.vfat -n "$work/bootfs.img" >/dev/null || { log "bootfs is not clean"; fsck.vfat -n "$work/bootfs.img" >&2; exit 1; }
e2fsck -fn "$partial?offset=$(( root_start * 512 ))" >/dev/null || { log "rootfs is not clean"; exit 1; }
mv "$partial" "$image"
# Builds of other versions of this script are stale once nobody used them for a week (several
# checkouts may share the cache, each with its own version): drop those (about 0.5 GiB each).
find "$cache" -maxdepth 1 -name "debian-$suite-$arch-*.img" ! -path "$image" -atime +7 -delete
elapsed=$(( $(date +%s) - started ))
log "built $image in $elapsed s ($(du -k --apparent-size "$image" | cut -f1) KiB apparent, $(du -k "$image" | cut -f1) KiB allocated)"
deliver
