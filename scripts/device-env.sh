# Sourced on the GPU machine (from the repository root, with .debs carried):
# unpacks the carried Debian packages into a private prefix (never over /) and
# exports what make needs to build against them (OpenBLAS, cJSON, libyaml, libpng). Usage:
#   source scripts/device-env.sh && make -j16 "${SPD_MAKE_ARGS[@]}" gpu-tests
SPD_DEPS=/opt/spd-deps
mkdir -p "$SPD_DEPS"
for f in .debs/*.deb; do dpkg -x "$f" "$SPD_DEPS"; done
_lib=$SPD_DEPS/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$_lib/openblas-pthread:$_lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/usr/local/cuda/bin:$PATH
SPD_MAKE_ARGS=("PKG_CFLAGS=-I$_lib/../../include/x86_64-linux-gnu/openblas-pthread -I$SPD_DEPS/usr/include -I$SPD_DEPS/usr/include/libpng16"
               "PKG_LIBS=-L$_lib/openblas-pthread -L$_lib -lopenblas -lcjson -lyaml -lpng16 -lz")
