#!/usr/bin/env bash
# Install kiln's bundled training data from Debian packages (see docs/data.md).
#
#   scripts/install-data.sh [--preset default|street|all] [--quiet] [DATA_DIR]
#
# default preset: the colour photographs listed in data/manifest.txt, copied to
#   DATA_DIR/default/train/ and DATA_DIR/default/val/ (split by image).
# street preset: the 795 frames of opencv-doc's vtest.avi (fixed camera, road
#   junction), JPEG quality 2, frames 1-596 -> DATA_DIR/street/train/,
#   frames 597-795 -> DATA_DIR/street/val/.
#
# Packages are fetched with `apt-get download` into data/cache/ and unpacked
# with dpkg-deb into a temporary folder: no root needed.  Every file is checked
# against the sha256 in the manifest.  Re-running skips work already done.
set -euo pipefail

readonly PROG=install-data
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly MANIFEST=${KILN_DATA_MANIFEST:-$REPO_ROOT/data/manifest.txt}
readonly CACHE_DIR=${KILN_DATA_CACHE:-$REPO_ROOT/data/cache}

# street preset: expected frame count of vtest.avi and the train/val cut.
readonly STREET_FRAMES=795
readonly STREET_TRAIN=596
readonly STREET_JPEG_Q=2
readonly STREET_STAMP_VERSION=1

# Directory names dropped when a manifest path is turned into a file name.
readonly NAME_STOP=" usr share backgrounds wallpapers contents images doc examples collection palapeli mate opencv-doc "

PRESET=all
QUIET=0
DATA_DIR=
TMP_ROOT=

usage() {
    cat <<EOF
Usage: scripts/install-data.sh [OPTIONS] [DATA_DIR]

Install kiln's bundled colour photographs from Debian packages.

  DATA_DIR           where to install (default: <repo>/data/photos)
  --preset NAME      default | street | all   (default: all)
                       default: ~80 photos -> DATA_DIR/default/{train,val}/
                       street:  795 video frames -> DATA_DIR/street/{train,val}/
  --quiet, -q        print errors only
  --help, -h         this text

Environment: KILN_DATA_MANIFEST (default data/manifest.txt),
             KILN_DATA_CACHE (.deb cache, default data/cache).
Needs apt-get and dpkg-deb; the street preset also needs ffmpeg.
EOF
}

log() { [[ $QUIET == 1 ]] || printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

cleanup() { [[ -n $TMP_ROOT && -d $TMP_ROOT ]] && rm -rf -- "$TMP_ROOT"; return 0; }

is_root() { [[ $(id -u) == 0 ]]; }

sha_of() { sha256sum -- "$1" | cut -d' ' -f1; }

parse_args() {
    while (($#)); do
        case $1 in
            --preset) (($# >= 2)) || die "--preset needs a value (default|street|all)"
                      PRESET=$2; shift ;;
            --preset=*) PRESET=${1#--preset=} ;;
            -q|--quiet) QUIET=1 ;;
            -h|--help) usage; exit 0 ;;
            --) shift; break ;;
            -*) die "unknown option '$1' (see --help)" ;;
            *) [[ -z $DATA_DIR ]] || die "more than one DATA_DIR given ('$DATA_DIR', '$1')"
               DATA_DIR=$1 ;;
        esac
        shift
    done
    if (($#)); then
        [[ -z $DATA_DIR && $# == 1 ]] || die "too many arguments (see --help)"
        DATA_DIR=$1
    fi
    case $PRESET in default|street|all) ;; *) die "unknown preset '$PRESET' (default|street|all)" ;; esac
    DATA_DIR=${DATA_DIR:-$REPO_ROOT/data/photos}
}

need_tools() {
    local t
    for t in apt-get dpkg-deb tar sha256sum; do
        command -v "$t" >/dev/null || die "'$t' not found: this script needs a Debian/Ubuntu system"
    done
}

# ---------------------------------------------------------------- manifest
M_SPLIT=(); M_PKG=(); M_PATH=(); M_SHA=(); M_NAME=()

# file name of an installed image: <package>__<path minus NAME_STOP dirs, '_'-joined>
dest_name() {
    local pkg=$1 path=$2 part out=
    local -a parts
    IFS=/ read -r -a parts <<<"$path"
    local n=${#parts[@]} i
    for ((i = 0; i < n - 1; i++)); do
        part=${parts[i]}
        [[ $NAME_STOP == *" $part "* ]] && continue
        out+=${part}_
    done
    printf '%s__%s%s' "$pkg" "$out" "${parts[n-1]}"
}

read_manifest() {
    [[ -r $MANIFEST ]] || die "manifest not found: $MANIFEST"
    local line split pkg path sha extra lineno=0 name
    local -A seen=()
    while IFS= read -r line || [[ -n $line ]]; do
        lineno=$((lineno + 1))
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        read -r split pkg path sha extra <<<"$line"
        [[ -n $sha && -z ${extra:-} ]] || die "$MANIFEST:$lineno: expected 4 fields (split package path sha256)"
        case $split in train|val|street) ;; *) die "$MANIFEST:$lineno: bad split '$split' (train|val|street)" ;; esac
        [[ $sha =~ ^[0-9a-f]{64}$ ]] || die "$MANIFEST:$lineno: bad sha256 '$sha'"
        path=${path#/}
        name=$(dest_name "$pkg" "$path")
        [[ -z ${seen[$name]:-} ]] || die "$MANIFEST:$lineno: '$path' maps to the same file name as line ${seen[$name]} ($name)"
        seen[$name]=$lineno
        M_SPLIT+=("$split"); M_PKG+=("$pkg"); M_PATH+=("$path"); M_SHA+=("$sha"); M_NAME+=("$name")
    done <"$MANIFEST"
    ((${#M_PATH[@]})) || die "manifest $MANIFEST lists no files"
}

# ---------------------------------------------------------------- packages
lists_present() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

apt_update() {
    log "apt-get update (package lists missing or stale) ..."
    apt-get update -qq >"$TMP_ROOT/apt-update.log" 2>&1 ||
        { cat "$TMP_ROOT/apt-update.log" >&2; die "apt-get update failed"; }
}

# newest cached .deb of a package ('' if none)
cached_deb() {
    local pkg=$1 f best=
    for f in "$CACHE_DIR/${pkg}"_*.deb; do
        [[ -f $f ]] || continue
        [[ $(dpkg-deb -f "$f" Package 2>/dev/null) == "$pkg" ]] || continue
        best=$f
    done
    printf '%s' "$best"
}

try_download() {
    local pkg=$1
    (cd "$CACHE_DIR" && apt-get download "$pkg") >"$TMP_ROOT/dl-$pkg.log" 2>&1
}

# Sets FETCHED_DEB to the path of the package's .deb, downloading it if not cached.
FETCHED_DEB=
fetch_deb() {
    local pkg=$1
    FETCHED_DEB=$(cached_deb "$pkg")
    [[ -z $FETCHED_DEB ]] || return 0
    mkdir -p "$CACHE_DIR"
    [[ -w $CACHE_DIR ]] || die "cache folder $CACHE_DIR is not writable"
    if is_root && ! lists_present; then apt_update; fi
    log "downloading $pkg ($(apt_size "$pkg")) ..."
    if ! try_download "$pkg"; then
        if grep -qE "Unable to locate package|has no installation candidate|Can't select|No packages found|404" "$TMP_ROOT/dl-$pkg.log"; then
            if is_root; then
                apt_update
                try_download "$pkg" || { cat "$TMP_ROOT/dl-$pkg.log" >&2; die "apt-get download $pkg failed (is '$pkg' a Debian package?)"; }
            else
                cat "$TMP_ROOT/dl-$pkg.log" >&2
                die "apt-get download $pkg failed: the package lists are missing or stale; run 'sudo apt-get update' and try again"
            fi
        else
            cat "$TMP_ROOT/dl-$pkg.log" >&2
            die "apt-get download $pkg failed (network? see the messages above)"
        fi
    fi
    FETCHED_DEB=$(cached_deb "$pkg")
    [[ -n $FETCHED_DEB ]] || die "apt-get download $pkg succeeded but no valid ${pkg}_*.deb appeared in $CACHE_DIR"
}

apt_size() {
    local s
    s=$(apt-cache show --no-all-versions "$1" 2>/dev/null | awk '/^Size:/ {print $2; exit}')
    [[ -n $s ]] && printf '%d MB' $(((s + 500000) / 1000000)) || printf 'size unknown'
}

# extract_members PKG DEB OUTDIR PATH... : unpack only the listed files
extract_members() {
    local pkg=$1 deb=$2 out=$3; shift 3
    local -a members=() ; local p missing=()
    for p in "$@"; do members+=("./$p"); done
    mkdir -p "$out"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -f - -C "$out" -- "${members[@]}" 2>"$TMP_ROOT/tar-$pkg.log" || true
    for p in "$@"; do
        [[ -f $out/$p && ! -L $out/$p ]] || missing+=("$p")
    done
    if ((${#missing[@]})); then
        printf '  %s\n' "${missing[@]}" >&2
        die "package $pkg ($(basename "$deb")) lacks ${#missing[@]} file(s) named in the manifest (listed above);" \
            "the manifest was made from a different version? (delete $deb to fetch the current one)"
    fi
}

verify_sha() {
    local pkg=$1 path=$2 file=$3 want=$4 got deb
    got=$(sha_of "$file")
    if [[ $got != "$want" ]]; then
        deb=$(cached_deb "$pkg")
        die "sha256 mismatch for $pkg:$path (manifest $want, got $got); cached $(basename "$deb") is" \
            "$(dpkg-deb -f "$deb" Version) -- a different version than the manifest was made from? (delete it to re-download)"
    fi
}

# ---------------------------------------------------------------- plan
NEED_IDX=()        # manifest indices that must be extracted
DEFAULT_TODO=0
STREET_TODO=0
STREET_IDX=-1

default_wanted() { [[ $PRESET == default || $PRESET == all ]]; }
street_wanted() { [[ $PRESET == street || $PRESET == all ]]; }

plan_default() {
    local i dest ok=0
    for i in "${!M_PATH[@]}"; do
        [[ ${M_SPLIT[i]} == train || ${M_SPLIT[i]} == val ]] || continue
        dest=$DATA_DIR/default/${M_SPLIT[i]}/${M_NAME[i]}
        if [[ -f $dest && $(sha_of "$dest") == "${M_SHA[i]}" ]]; then
            ok=$((ok + 1))
        else
            NEED_IDX+=("$i"); DEFAULT_TODO=$((DEFAULT_TODO + 1))
        fi
    done
    if ((DEFAULT_TODO == 0)); then
        log "default: all $ok images present and verified, nothing to do"
    else
        log "default: $ok images present, $DEFAULT_TODO to install"
    fi
}

street_stamp_text() {
    printf 'vtest.avi sha256=%s frames=%d train=%d jpeg_q=%d version=%d\n' \
        "${M_SHA[STREET_IDX]}" "$STREET_FRAMES" "$STREET_TRAIN" "$STREET_JPEG_Q" "$STREET_STAMP_VERSION"
}

count_files() { find "$1" -maxdepth 1 -type f -name "$2" 2>/dev/null | wc -l; }

plan_street() {
    local i
    for i in "${!M_PATH[@]}"; do
        [[ ${M_SPLIT[i]} == street ]] && STREET_IDX=$i
    done
    ((STREET_IDX >= 0)) || die "manifest $MANIFEST has no 'street' line (the vtest.avi source)"
    local stamp=$DATA_DIR/street/.installed
    if [[ -f $stamp && $(cat "$stamp") == "$(street_stamp_text)" ]] &&
       (($(count_files "$DATA_DIR/street/train" '*.jpg') == STREET_TRAIN)) &&
       (($(count_files "$DATA_DIR/street/val" '*.jpg') == STREET_FRAMES - STREET_TRAIN)); then
        log "street: all $STREET_FRAMES frames present, nothing to do"
        return 0
    fi
    STREET_TODO=1
    NEED_IDX+=("$STREET_IDX")
    log "street: frames missing or out of date, will extract $STREET_FRAMES frames"
    ensure_ffmpeg
}

ensure_ffmpeg() {
    command -v ffmpeg >/dev/null && return 0
    if is_root; then
        log "installing ffmpeg (apt-get install ffmpeg) ..."
        lists_present || apt_update
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >"$TMP_ROOT/ffmpeg.log" 2>&1 ||
            { cat "$TMP_ROOT/ffmpeg.log" >&2; die "apt-get install ffmpeg failed"; }
    else
        die "the street preset needs ffmpeg: run 'sudo apt-get install ffmpeg' (or use --preset default)"
    fi
}

# ---------------------------------------------------------------- fetch + extract
EXTRACT_DIR=

fetch_and_extract() {
    ((${#NEED_IDX[@]})) || return 0
    EXTRACT_DIR=$TMP_ROOT/extract
    local -A by_pkg=()
    local i pkg deb
    local -a order=()
    for i in "${NEED_IDX[@]}"; do
        pkg=${M_PKG[i]}
        [[ -n ${by_pkg[$pkg]+x} ]] || order+=("$pkg")
        by_pkg[$pkg]+="$i "
    done
    for pkg in "${order[@]}"; do
        fetch_deb "$pkg"
        deb=$FETCHED_DEB
        local -a paths=()
        for i in ${by_pkg[$pkg]}; do paths+=("${M_PATH[i]}"); done
        log "extracting ${#paths[@]} file(s) from $(basename "$deb") ..."
        extract_members "$pkg" "$deb" "$EXTRACT_DIR/$pkg" "${paths[@]}"
        for i in ${by_pkg[$pkg]}; do
            verify_sha "$pkg" "${M_PATH[i]}" "$EXTRACT_DIR/$pkg/${M_PATH[i]}" "${M_SHA[i]}"
        done
    done
}

# ---------------------------------------------------------------- install
install_default() {
    local i split dest d f n
    mkdir -p "$DATA_DIR/default/train" "$DATA_DIR/default/val"
    local -A keep=()
    for i in "${!M_PATH[@]}"; do
        split=${M_SPLIT[i]}
        [[ $split == train || $split == val ]] || continue
        keep["$split/${M_NAME[i]}"]=1
    done
    for i in "${NEED_IDX[@]}"; do
        split=${M_SPLIT[i]}
        [[ $split == train || $split == val ]] || continue
        dest=$DATA_DIR/default/$split/${M_NAME[i]}
        cp -- "$EXTRACT_DIR/${M_PKG[i]}/${M_PATH[i]}" "$dest.part"
        chmod 0644 "$dest.part"
        mv -f -- "$dest.part" "$dest"
    done
    # DATA_DIR/default/ is managed by this script: drop files the manifest no
    # longer lists there (e.g. an image moved from val to train).
    for d in train val; do
        for f in "$DATA_DIR/default/$d"/* "$DATA_DIR/default/$d"/.*.part; do
            [[ -e $f ]] || continue
            n=$(basename "$f")
            if [[ -z ${keep["$d/$n"]:-} ]]; then
                warn "removing $f (not listed for '$d' in the manifest)"
                rm -rf -- "$f"
            fi
        done
    done
    ((DEFAULT_TODO)) || return 0
    local nt nv
    nt=$(count_files "$DATA_DIR/default/train" '*')
    nv=$(count_files "$DATA_DIR/default/val" '*')
    log "default: $nt train + $nv val images in $DATA_DIR/default ($(du -sh "$DATA_DIR/default" | cut -f1))"
}

install_street() {
    local avi=$EXTRACT_DIR/opencv-doc/${M_PATH[STREET_IDX]}
    local frames=$TMP_ROOT/frames n i f
    mkdir -p "$frames"
    log "street: decoding $(basename "$avi") to JPEG (q=$STREET_JPEG_Q) ..."
    ffmpeg -nostdin -hide_banner -loglevel error -i "$avi" -an -q:v "$STREET_JPEG_Q" \
        -start_number 1 "$frames/vtest_%04d.jpg" || die "ffmpeg failed to decode $avi"
    n=$(count_files "$frames" '*.jpg')
    ((n == STREET_FRAMES)) || die "vtest.avi gave $n frames, expected $STREET_FRAMES"
    local street=$DATA_DIR/street
    mkdir -p "$street"
    rm -rf -- "$street/train" "$street/val" "$street/.installed"
    mkdir -p "$street/train" "$street/val"
    for ((i = 1; i <= STREET_FRAMES; i++)); do
        printf -v f 'vtest_%04d.jpg' "$i"
        if ((i <= STREET_TRAIN)); then mv -- "$frames/$f" "$street/train/"; else mv -- "$frames/$f" "$street/val/"; fi
    done
    street_stamp_text >"$street/.installed"
    log "street: $STREET_TRAIN train + $((STREET_FRAMES - STREET_TRAIN)) val frames in $street ($(du -sh "$street" | cut -f1))"
}

main() {
    parse_args "$@"
    need_tools
    read_manifest
    mkdir -p "$DATA_DIR" || die "cannot create $DATA_DIR"
    DATA_DIR=$(cd "$DATA_DIR" && pwd)
    TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/kiln-data.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    log "kiln data -> $DATA_DIR (preset: $PRESET)"
    if default_wanted; then plan_default; fi
    if street_wanted; then plan_street; fi
    fetch_and_extract
    if default_wanted; then install_default; fi
    if street_wanted && ((STREET_TODO)); then install_street; fi
    log "done"
}

main "$@"
