// Element types and the tensor descriptor. A descriptor names a tensor by its
// SPD state-dict name and says where its bytes live; it owns no memory (the
// spec table's role buffers do, see spec.h).
#ifndef SPD_TENSOR_H
#define SPD_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SPD_DTYPE_F32,
    SPD_DTYPE_F64,
    SPD_DTYPE_BF16,
    SPD_DTYPE_F16,
    SPD_DTYPE_I64,
    SPD_DTYPE_I32,
    SPD_DTYPE_I16,
    SPD_DTYPE_I8,
    SPD_DTYPE_U8,
    SPD_DTYPE_BOOL,
    SPD_DTYPE_COUNT
} spd_dtype;

#define SPD_MAX_DIMS 8
#define SPD_NAME_MAX 160

size_t spd_dtype_size(spd_dtype dt);
// Safetensors spelling: "F32", "F64", "BF16", "I64", ...
const char *spd_dtype_name(spd_dtype dt);
// Returns 0 and sets *out when name is a known safetensors dtype, else -1.
int spd_dtype_parse(const char *name, spd_dtype *out);

// Roles: one allocation per role (DESIGN.md). A TRAINED tensor also owns a
// gradient and two Adam moments, at the same offset in three mirror buffers.
typedef enum { SPD_ROLE_FROZEN, SPD_ROLE_TRAINED, SPD_ROLE_ACT, SPD_ROLE_COUNT } spd_role;

typedef enum { SPD_INIT_ZERO, SPD_INIT_ONES, SPD_INIT_NORMAL } spd_init;

typedef struct {
    char name[SPD_NAME_MAX];
    spd_dtype dtype;
    int ndim;
    int64_t shape[SPD_MAX_DIMS];
    spd_role role;
    spd_init init;
    double init_std;  // SPD_INIT_NORMAL: N(0, init_std^2)
    size_t offset;    // bytes into its role's buffer
    size_t nbytes;
    void *data;       // set by spd_spec_alloc
} spd_tensor;

int64_t spd_numel(int ndim, const int64_t *shape);
int64_t spd_tensor_numel(const spd_tensor *t);
// "[3, 11, 97]" into buf (always terminated).
const char *spd_shape_str(char *buf, size_t size, int ndim, const int64_t *shape);
bool spd_shape_equal(int ndim_a, const int64_t *a, int ndim_b, const int64_t *b);

#endif
