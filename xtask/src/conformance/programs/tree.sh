# GNU tar inside the emulated userland (cargo xtask conformance, workload `tar`):
# tonistiigi/binfmt#285 and #287 are tar failing with EINVAL from openat2 under a
# QEMU pin. Makes a tree of 6,000 files (nested directories, symlinks, hard links,
# long names, one large file), archives it, extracts the archive elsewhere, has tar
# compare the archive with the extracted tree, re-creates an archive from that tree
# and has tar compare it with the original tree.
set -eu
work=/tmp/tar-workload
rm -rf "$work"
mkdir -p "$work/src" "$work/out"
cd "$work"
i=0
while [ $i -lt 60 ]; do
  d="src/dir-$i/sub-$((i % 7))"
  mkdir -p "$d"
  j=0
  while [ $j -lt 100 ]; do
    echo "file $i $j" >"$d/file-$j"
    j=$((j + 1))
  done
  ln -s "file-0" "$d/link"
  ln "$d/file-1" "$d/hard"
  i=$((i + 1))
done
long=src/a-directory-with-a-name-longer-than-the-hundred-bytes-a-ustar-header-holds
long=$long/and-a-file-below-it-with-a-long-name-too.txt
mkdir -p "$(dirname "$long")"
echo long >"$long"
dd if=/dev/urandom of=src/large bs=1M count=8 status=none
tar -cf a.tar -C src .
tar -xf a.tar -C out
tar -df a.tar -C out
tar -cf b.tar -C out .
tar -df b.tar -C src
tar -tf a.tar | sort >a.list
tar -tf b.tar | sort >b.list
cmp a.list b.list
files=$(find out -type f | wc -l)
echo "tar ok: $(tar --version | head -n 1), $files files extracted and re-created"
rm -rf "$work"
