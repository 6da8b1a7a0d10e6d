# Sourced on the GPU machine (from the repository root, with .debs carried):
# unpacks the carried Debian packages into a private prefix (never over /) and
# exports what make needs to build against them. Usage:
#   source scripts/device-env.sh && make -j16 "${SPD_MAKE_ARGS[@]}" gpu-tests
SPD_DEPS=/opt/spd-deps
mkdir -p "$SPD_DEPS"
for f in .debs/*.deb; do dpkg -x "$f" "$SPD_DEPS"; done
_lib=$SPD_DEPS/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$_lib/openblas-pthread:$_lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/usr/local/cuda/bin:$PATH
# libpng (figures) is not carried: the machine's own, by its dev link or its runtime name.
_png=
for _d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
    if [ -e $_d/libpng16.so ]; then _png=-lpng16; break; fi
    if [ -e $_d/libpng.so ]; then _png=-lpng; break; fi
    if [ -e $_d/libpng16.so.16 ]; then _png=-l:libpng16.so.16; break; fi
done
SPD_MAKE_ARGS=("PKG_CFLAGS=-I$_lib/../../include/x86_64-linux-gnu/openblas-pthread -I$SPD_DEPS/usr/include"
               "PKG_LIBS=-L$_lib/openblas-pthread -L$_lib -lopenblas -lcjson -lyaml $_png")
