// Training the toy targets as SPD does (spd/target_train.h): the presets carry
// SPD's train_tms.py / train_resid_mlp.py settings, the loss falls, a short TMS
// 5-2 run reconstructs sparse inputs, fixed parts stay fixed (identity hidden
// layer, random unit-norm embedding with W_U = W_E^T), runs are deterministic
// from the seed, and the written file carries SPD's names, shapes and metadata.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/safetensors.h"
#include "spd/target_train.h"
#include "testing.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const double *param(const spd_target_run *r, const char *name) {
    const spd_tensor *t = spd_spec_find(&r->spec, name);
    SPD_ASSERT(t);
    return t->data;
}

static void test_presets(void) {
    spd_target_train_config c;
    int n = 0, ok = 1;
    for (const char *const *p = spd_target_presets; *p; p++, n++) ok &= spd_target_preset(*p, &c) == 0;
    test_report(n == 7 && ok, "presets: the seven SPD targets are known", NULL);
    SPD_ASSERT(spd_target_preset("tms_5-2", &c) == 0);
    test_report(c.task == SPD_TARGET_TMS && c.tms.n_features == 5 && c.tms.n_hidden == 2 && c.tms.n_hidden_layers == 0 &&
                    c.tms.tied_weights && !c.tms.init_bias_to_zero && c.batch_size == 1024 && c.steps == 10000 &&
                    c.lr == 5e-3 && c.lr_fn == SPD_SCHEDULE_CONSTANT && c.weight_decay == 0.01 &&
                    c.feature_probability == 0.05 && c.generation == SPD_TOY_AT_LEAST_ZERO_ACTIVE &&
                    c.importance_val == 1.0 && c.seed == 6,
                "presets: tms_5-2 = train_tms.py (5-2 tied, bias kept, batch 1024, 10k steps, lr 5e-3 constant, wd 0.01, p 0.05), seed 6",
                NULL);
    SPD_ASSERT(spd_target_preset("tms_40-10-id", &c) == 0);
    test_report(c.tms.n_features == 40 && c.tms.n_hidden == 10 && c.tms.n_hidden_layers == 1 &&
                    c.tms_hidden == TMS_HIDDEN_FIXED_IDENTITY && c.tms.init_bias_to_zero && c.batch_size == 8192,
                "presets: tms_40-10-id (40-10, fixed identity hidden layer, bias zeroed, batch 8192)", NULL);
    SPD_ASSERT(spd_target_preset("resid_mlp_3", &c) == 0);
    test_report(c.task == SPD_TARGET_RESID_MLP && c.resid.n_features == 102 && c.resid.d_embed == 1000 &&
                    c.resid.d_mlp == 17 && c.resid.n_layers == 3 && c.resid.act == RESID_MLP_RELU && !c.resid.in_bias &&
                    !c.resid.out_bias && c.embedding == RESID_EMBED_FIXED_RANDOM && c.batch_size == 2048 &&
                    c.steps == 10000 && c.lr == 3e-3 && c.lr_fn == SPD_SCHEDULE_COSINE && c.lr_final_val_frac == 0.0 &&
                    c.feature_probability == 0.01 && c.n_batches_final_losses == 10,
                "presets: resid_mlp_3 = train_resid_mlp.py (102 features, 1000/17 x 3, relu, batch 2048, 10k steps, "
                "lr 3e-3 cosine to 0, p 0.01)",
                NULL);
    SPD_ASSERT(spd_target_preset("resid_mlp_1", &c) == 0);
    test_report(c.resid.n_features == 100 && c.resid.d_mlp == 50 && c.resid.n_layers == 1 && c.steps == 1000,
                "presets: resid_mlp_1 (100 features, d_mlp 50, 1000 steps)", NULL);
    int rc = spd_target_preset("tms_5-3", &c);
    test_report(rc == -1 && strstr(spd_last_error(), "unknown experiment 'tms_5-3'"), "presets: an unknown name is refused",
                "%s", spd_last_error());
}

// TMS 5-2 with SPD's settings, 2000 steps: the loss falls, sparse inputs are
// reconstructed (eval loss over 10 fresh batches below 0.25 x the all-zero
// output's E[x^2] = p/3 = 1.67e-2, i.e. < 4.2e-3; a target that drops a feature
// sits near 0.2 p/3 per dropped feature above the ~1.9e-3 of a full pentagon), the
// weights stay tied; one-hot 0.75 inputs come back within 0.1 (train_tms.py's
// "well preserved") for all five features.
static void test_tms_5_2(void) {
    spd_target_train_config c;
    SPD_ASSERT(spd_target_preset("tms_5-2", &c) == 0);
    c.steps = 2000;
    spd_target_run r;
    SPD_ASSERT(spd_target_run_init(&r, &c) == 0);
    const double e0 = spd_target_run_eval(&r, 10);
    double first = 0, last = 0;
    const double t0 = now_s();
    for (int s = 0; s < c.steps; s++) {
        double l = spd_target_run_step(&r);
        if (s < 20) first += l / 20;
        if (s >= c.steps - 20) last += l / 20;
    }
    const double secs = now_s() - t0;
    const double e1 = spd_target_run_eval(&r, 10);
    const double trivial = c.feature_probability / 3.0;
    char name[256];
    snprintf(name, sizeof name,
             "tms 5-2, 2000 steps (%.2f s): train loss %.3e -> %.3e; eval %.3e -> %.3e < 0.25 p/3 = %.3e", secs,
             first, last, e0, e1, 0.25 * trivial);
    test_report(last < 0.25 * first && e1 < 0.25 * trivial && isfinite(e1), name, NULL);
    const double *W1 = param(&r, "linear1.weight"), *W2 = param(&r, "linear2.weight");
    bool tied = true;
    for (int h = 0; h < 2; h++)
        for (int f = 0; f < 5; f++) tied &= W2[f * 2 + h] == W1[h * 5 + f];
    test_report(tied, "tms 5-2: linear2.weight stays linear1.weight^T through training", NULL);
    int good = 0;
    char outs[128] = "";
    for (int i = 0; i < 5; i++) {
        double x[5] = {0}, y[5];
        x[i] = 0.75;
        spd_target_run_apply(&r, x, y);
        good += fabs(y[i] - 0.75) < 0.1;
        snprintf(outs + strlen(outs), sizeof outs - strlen(outs), " %.3f", y[i]);
    }
    snprintf(name, sizeof name, "tms 5-2: one-hot 0.75 inputs reconstructed within 0.1 for all 5 features (%d:%s)",
             good, outs);
    test_report(good == 5, name, NULL);
    spd_target_run_free(&r);
}

// The "-id" target: the hidden layer is the identity before and after training.
static void test_tms_id(void) {
    spd_target_train_config c;
    SPD_ASSERT(spd_target_preset("tms_5-2-id", &c) == 0);
    c.steps = 300;
    spd_target_run r;
    SPD_ASSERT(spd_target_run_init(&r, &c) == 0);
    double first = spd_target_run_eval(&r, 4);
    for (int s = 0; s < c.steps; s++) spd_target_run_step(&r);
    double last = spd_target_run_eval(&r, 4);
    const double *Hd = param(&r, "hidden_layers.0.weight");
    const spd_tensor *ht = spd_spec_find(&r.spec, "hidden_layers.0.weight");
    bool id = Hd[0] == 1 && Hd[1] == 0 && Hd[2] == 0 && Hd[3] == 1 && ht->role == SPD_ROLE_FROZEN;
    char name[200];
    snprintf(name, sizeof name, "tms 5-2-id: hidden_layers.0 stays the frozen identity; eval loss %.3e -> %.3e", first,
             last);
    test_report(id && last < first, name, NULL);
    spd_target_run_free(&r);
}

// ResidMLP 1 layer at a small batch: the loss falls, W_E rows stay unit norm and
// W_U = W_E^T (frozen), and the labels are relu(x) + x.
static void test_resid(void) {
    spd_target_train_config c;
    SPD_ASSERT(spd_target_preset("resid_mlp_1", &c) == 0);
    c.batch_size = 256;
    c.steps = 40;
    spd_target_run r;
    SPD_ASSERT(spd_target_run_init(&r, &c) == 0);
    const double e0 = spd_target_run_eval(&r, 4);
    bool labels_ok = true;  // after eval: x and labels are the last eval batch
    for (long i = 0; i < (long)c.batch_size * 100; i++) labels_ok &= r.labels[i] == fmax(r.x[i], 0.0) + r.x[i];
    double first = 0, last = 0;
    for (int s = 0; s < c.steps; s++) {
        double l = spd_target_run_step(&r);
        if (s < 5) first += l / 5;
        if (s >= c.steps - 5) last += l / 5;
    }
    const double e1 = spd_target_run_eval(&r, 4);
    const double *WE = param(&r, "W_E"), *WU = param(&r, "W_U");
    double worst = 0;
    bool transposed = true;
    for (int f = 0; f < 100; f++) {
        double s = 0;
        for (int d = 0; d < 1000; d++) {
            s += WE[f * 1000 + d] * WE[f * 1000 + d];
            transposed &= WU[d * 100 + f] == WE[f * 1000 + d];
        }
        worst = fmax(worst, fabs(sqrt(s) - 1));
    }
    char name[256];
    snprintf(name, sizeof name,
             "resid_mlp_1 (batch 256, 40 steps): train %.3e -> %.3e, eval %.3e -> %.3e; labels relu(x) + x", first,
             last, e0, e1);
    test_report(last < first && e1 < e0 && labels_ok, name, NULL);
    snprintf(name, sizeof name, "resid_mlp_1: fixed embedding, rows unit norm (max dev %.1e), W_U = W_E^T", worst);
    test_report(worst < 1e-12 && transposed, name, NULL);
    spd_target_run_free(&r);
}

static int read_file(const char *path, unsigned char **buf, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)*n + 1);
    size_t got = fread(*buf, 1, (size_t)*n, f);
    fclose(f);
    return got == (size_t)*n ? 0 : -1;
}

static void train_and_save(const char *experiment, int steps, uint64_t seed, const char *path) {
    spd_target_train_config c;
    SPD_ASSERT(spd_target_preset(experiment, &c) == 0);
    c.steps = steps;
    c.seed = seed;
    if (c.task == SPD_TARGET_RESID_MLP) c.batch_size = 64;
    spd_target_run r;
    SPD_ASSERT(spd_target_run_init(&r, &c) == 0);
    for (int s = 0; s < steps; s++) spd_target_run_step(&r);
    SPD_ASSERT(spd_target_run_save(&r, path, spd_target_run_eval(&r, 1)) == 0);
    spd_target_run_free(&r);
}

static void test_files(void) {
    char dir[] = "/tmp/spd_tt_XXXXXX";
    SPD_ASSERT(mkdtemp(dir));
    char a[64], b[64], d[64];
    snprintf(a, sizeof a, "%s/a.safetensors", dir);
    snprintf(b, sizeof b, "%s/b.safetensors", dir);
    snprintf(d, sizeof d, "%s/d.safetensors", dir);
    train_and_save("tms_40-10-id", 20, 7, a);
    train_and_save("tms_40-10-id", 20, 7, b);
    train_and_save("tms_40-10-id", 20, 8, d);
    unsigned char *ba = NULL, *bb = NULL, *bd = NULL;
    long na = 0, nb = 0, nd = 0;
    SPD_ASSERT(read_file(a, &ba, &na) == 0 && read_file(b, &bb, &nb) == 0 && read_file(d, &bd, &nd) == 0);
    test_report(na == nb && memcmp(ba, bb, (size_t)na) == 0, "determinism: the same seed writes the same file, byte for byte",
                NULL);
    test_report(!(na == nd && memcmp(ba, bd, (size_t)na) == 0), "determinism: another seed writes another model", NULL);
    free(ba);
    free(bb);
    free(bd);

    spd_st_file *f = spd_st_open(a);
    SPD_ASSERT(f);
    const spd_st_entry *w1 = spd_st_find(f, "linear1.weight"), *w2 = spd_st_find(f, "linear2.weight"),
                       *bi = spd_st_find(f, "linear2.bias"), *h0 = spd_st_find(f, "hidden_layers.0.weight");
    bool shapes = f->count == 4 && w1 && w2 && bi && h0 && w1->dtype == SPD_DTYPE_F32 && w1->shape[0] == 10 &&
                  w1->shape[1] == 40 && w2->shape[0] == 40 && w2->shape[1] == 10 && bi->shape[0] == 40 &&
                  h0->shape[0] == 10 && h0->shape[1] == 10;
    const char *task = spd_st_meta(f, "task"), *tied = spd_st_meta(f, "tied"), *nf = spd_st_meta(f, "n_features"),
               *nh = spd_st_meta(f, "n_hidden"), *nl = spd_st_meta(f, "n_hidden_layers");
    bool meta = task && strcmp(task, "tms") == 0 && tied && strcmp(tied, "true") == 0 && nf && strcmp(nf, "40") == 0 &&
                nh && strcmp(nh, "10") == 0 && nl && strcmp(nl, "1") == 0 && spd_st_meta(f, "final_loss");
    float W1[400], W2[400];
    SPD_ASSERT(spd_st_read(f, "linear1.weight", SPD_DTYPE_F32, 2, (int64_t[]){10, 40}, W1) == 0);
    SPD_ASSERT(spd_st_read(f, "linear2.weight", SPD_DTYPE_F32, 2, (int64_t[]){40, 10}, W2) == 0);
    bool t = true;
    for (int h = 0; h < 10; h++)
        for (int i = 0; i < 40; i++) t &= W2[i * 10 + h] == W1[h * 40 + i];
    test_report(shapes && meta && t,
                "file (tms_40-10-id): SPD's state-dict names and shapes in float32, linear2.weight = linear1.weight^T, "
                "metadata task/tied/sizes/final_loss",
                NULL);
    spd_st_close(f);

    train_and_save("resid_mlp_2", 2, 0, a);
    f = spd_st_open(a);
    SPD_ASSERT(f);
    const char *act = spd_st_meta(f, "act_fn_name");
    bool ok = f->count == 6 && spd_st_find(f, "W_E") && spd_st_find(f, "W_U") && spd_st_find(f, "layers.0.mlp_in.weight") &&
              spd_st_find(f, "layers.1.mlp_out.weight") && spd_st_find(f, "layers.1.mlp_out.weight")->shape[0] == 1000 &&
              spd_st_find(f, "layers.1.mlp_out.weight")->shape[1] == 25 && act && strcmp(act, "relu") == 0 &&
              strcmp(spd_st_meta(f, "task"), "resid_mlp") == 0 && strcmp(spd_st_meta(f, "n_layers"), "2") == 0;
    test_report(ok, "file (resid_mlp_2): W_E, W_U, layers.<i>.mlp_{in,out}.weight (no biases), act_fn_name relu", NULL);
    spd_st_close(f);
    unlink(a);
    unlink(b);
    unlink(d);
    rmdir(dir);
}

static void test_refusals(void) {
    spd_target_train_config c;
    SPD_ASSERT(spd_target_preset("tms_5-2", &c) == 0);
    spd_target_run r;
    c.steps = 0;
    int rc = spd_target_run_init(&r, &c);
    test_report(rc == -1 && strstr(spd_last_error(), "steps"), "steps 0 is refused", "%s", spd_last_error());
    spd_target_run_free(&r);
    SPD_ASSERT(spd_target_preset("tms_5-2", &c) == 0);
    c.feature_probability = 1.5;
    rc = spd_target_run_init(&r, &c);
    test_report(rc == -1, "feature_probability 1.5 is refused", "%s", spd_last_error());
    spd_target_run_free(&r);
}

int main(void) {
    test_presets();
    test_tms_5_2();
    test_tms_id();
    test_resid();
    test_files();
    test_refusals();
    return test_exit();
}
