/* test_gguf.c — the GGUF reader and writer.
 *
 * Real files from ../shared must open with the metadata and tensor shapes
 * their provenance states; files written by gguf_writer must read back
 * exactly; and every kind of corruption (truncation at every point, bad
 * magic, offsets past the end, too many dimensions, absurd counts, unknown
 * types, duplicate names …) must give HEARTH_ERR_BAD_MODEL or
 * HEARTH_ERR_UNSUPPORTED with a message naming the problem, never a crash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "test.h"
#include "util/dtype.h"

TEST(stories_metadata_and_tensors) {
    gguf_file *f;
    hearth_error err;
    REQUIRE(gguf_open(test_shared("models/stories260K.gguf"), true, &f, &err) == HEARTH_OK);
    CHECK(f->version == 3);
    CHECK(f->n_tensors == 48);
    uint32_t v = 0;
    CHECK(gguf_get_u32_req(f, "llama.embedding_length", &v, &err) == HEARTH_OK && v == 64);
    CHECK(gguf_get_u32_req(f, "llama.feed_forward_length", &v, &err) == HEARTH_OK && v == 172);
    CHECK(gguf_get_u32_req(f, "llama.attention.head_count_kv", &v, &err) == HEARTH_OK && v == 4);
    float eps = 0;
    CHECK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps, &err) == HEARTH_OK);
    CHECK(eps > 0.99e-5f && eps < 1.01e-5f);
    gguf_str s = {0};
    CHECK(gguf_get_str_req(f, "general.architecture", &s, &err) == HEARTH_OK);
    CHECK(gguf_str_eq(s, "llama"));
    /* Wrong type and missing key are errors naming the key. */
    CHECK(gguf_get_str(f, "llama.block_count", &s, &err) == HEARTH_ERR_BAD_MODEL);
    CHECK(strstr(err.msg, "llama.block_count") != NULL);
    CHECK(gguf_get_u32_req(f, "no.such.key", &v, &err) == HEARTH_ERR_BAD_MODEL);
    CHECK(strstr(err.msg, "no.such.key") != NULL);
    const gguf_kv *toks;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, &err) == HEARTH_OK);
    REQUIRE(toks && toks->v.arr.n == 512);
    CHECK(gguf_str_eq(toks->v.arr.strs[1], "<s>"));
    CHECK(gguf_str_eq(toks->v.arr.strs[3], "<0x00>"));
    const gguf_kv *scores;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores, &err) == HEARTH_OK);
    REQUIRE(scores && scores->v.arr.n == 512);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    REQUIRE(t);
    CHECK(t->type == HEARTH_DTYPE_F32 && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 512);
    CHECK(t->nbytes == 64 * 512 * 4);
    t = gguf_find_tensor(f, "blk.4.ffn_down.weight");
    REQUIRE(t);
    CHECK(t->ne[0] == 172 && t->ne[1] == 64);
    CHECK(gguf_find_tensor(f, "blk.5.ffn_down.weight") == NULL);
    gguf_close(f);
}

TEST(quantized_files_types) {
    gguf_file *f;
    hearth_error err;
    REQUIRE(gguf_open(test_shared("models/stories260K-q4_0.gguf"), false, &f, &err) == HEARTH_OK);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    REQUIRE(t);
    CHECK(t->type == HEARTH_DTYPE_Q4_0 && t->nbytes == 512 * 2 * 18);
    t = gguf_find_tensor(f, "output.weight");
    REQUIRE(t);
    CHECK(t->type == HEARTH_DTYPE_Q8_0);
    t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
    REQUIRE(t);
    CHECK(t->type == HEARTH_DTYPE_F16);
    gguf_close(f);
}

TEST(every_vocab_file_opens) {
    const char *names[] = {"bert-bge", "deepseek-coder", "deepseek-llm", "falcon",
                           "gpt-2",    "llama-spm",      "mpt",          "phi-3",
                           "refact",   "starcoder"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", names[i]);
        gguf_file *f;
        hearth_error err;
        hearth_status st = gguf_open(test_shared(rel), true, &f, &err);
        CHECKF(st == HEARTH_OK, "%s: %s", rel, err.msg);
        if (st != HEARTH_OK) continue;
        CHECK(f->n_tensors == 0);
        CHECK(gguf_find(f, "tokenizer.ggml.tokens") != NULL);
        gguf_close(f);
    }
}

/* A small valid file: every metadata type and three tensors. */
static uint8_t *make_sample(size_t *len) {
    gguf_writer *w;
    hearth_error err;
    if (gguf_writer_create(&w, &err) != HEARTH_OK) return NULL;
    static float data[64 * 4];
    for (int i = 0; i < 64 * 4; i++) data[i] = (float)i * 0.5f;
    static uint8_t q8[2 * 34];
    for (int i = 0; i < (int)sizeof q8; i++) q8[i] = (uint8_t)i;
    const char *strs[] = {"alpha", "", "gamma"};
    int32_t ints[] = {-1, 2, 3};
    uint64_t ne2[] = {64, 4}, ne1[] = {64}, neq[] = {64};
    bool ok =
        gguf_writer_set_str(w, "general.architecture", "test", &err) == HEARTH_OK &&
        gguf_writer_set_u32(w, "test.u32", 123456, &err) == HEARTH_OK &&
        gguf_writer_set_i32(w, "test.i32", -7, &err) == HEARTH_OK &&
        gguf_writer_set_u64(w, "test.u64", 1ull << 40, &err) == HEARTH_OK &&
        gguf_writer_set_f32(w, "test.f32", 0.25f, &err) == HEARTH_OK &&
        gguf_writer_set_bool(w, "test.bool", true, &err) == HEARTH_OK &&
        gguf_writer_set_arr(w, "test.ints", GGUF_TYPE_INT32, ints, 3, &err) == HEARTH_OK &&
        gguf_writer_set_arr_str(w, "test.strs", strs, NULL, 3, &err) == HEARTH_OK &&
        gguf_writer_add_tensor(w, "matrix", HEARTH_DTYPE_F32, 2, ne2, data, &err) == HEARTH_OK &&
        gguf_writer_add_tensor(w, "vector", HEARTH_DTYPE_F32, 1, ne1, data, &err) == HEARTH_OK &&
        gguf_writer_add_tensor(w, "quant", HEARTH_DTYPE_Q8_0, 1, neq, q8, &err) == HEARTH_OK;
    uint8_t *buf = NULL;
    if (ok && gguf_writer_write_memory(w, &buf, len, &err) != HEARTH_OK) buf = NULL;
    gguf_writer_free(w);
    return buf;
}

TEST(writer_round_trip) {
    size_t len;
    uint8_t *buf = make_sample(&len);
    REQUIRE(buf);
    gguf_file *f;
    hearth_error err;
    hearth_status st = gguf_open_memory(buf, len, &f, &err);
    CHECKF(st == HEARTH_OK, "%s", err.msg);
    if (st == HEARTH_OK) {
        uint32_t u = 0;
        CHECK(gguf_get_u32(f, "test.u32", &u, &err) == HEARTH_OK && u == 123456);
        CHECK(gguf_get_u32(f, "test.i32", &u, &err) == HEARTH_ERR_BAD_MODEL); /* negative */
        const gguf_kv *kv = gguf_find(f, "test.u64");
        CHECK(kv && kv->type == GGUF_TYPE_UINT64 && kv->v.u64 == (1ull << 40));
        float x = 0;
        CHECK(gguf_get_f32(f, "test.f32", &x, &err) == HEARTH_OK && x == 0.25f);
        bool b = false;
        CHECK(gguf_get_bool(f, "test.bool", &b, &err) == HEARTH_OK && b);
        const gguf_kv *ints;
        CHECK(gguf_get_arr(f, "test.ints", GGUF_TYPE_INT32, &ints, &err) == HEARTH_OK);
        CHECK(ints && ints->v.arr.n == 3 && gguf_arr_i64(ints, 0) == -1 &&
              gguf_arr_i64(ints, 2) == 3);
        CHECK(gguf_get_arr(f, "test.ints", GGUF_TYPE_FLOAT32, &ints, &err) == HEARTH_ERR_BAD_MODEL);
        const gguf_kv *strs;
        CHECK(gguf_get_arr(f, "test.strs", GGUF_TYPE_STRING, &strs, &err) == HEARTH_OK);
        CHECK(strs && gguf_str_eq(strs->v.arr.strs[0], "alpha") && strs->v.arr.strs[1].len == 0 &&
              gguf_str_eq(strs->v.arr.strs[2], "gamma"));
        const gguf_tensor *t = gguf_find_tensor(f, "matrix");
        CHECK(t && t->ne[0] == 64 && t->ne[1] == 4 && ((const float *)t->data)[3] == 1.5f);
        CHECK(t && (t->offset % 32) == 0 && ((uintptr_t)t->data - (uintptr_t)buf) % 32 == 0);
        t = gguf_find_tensor(f, "quant");
        CHECK(t && t->type == HEARTH_DTYPE_Q8_0 && t->nbytes == 68 &&
              ((const uint8_t *)t->data)[5] == 5);
        gguf_close(f);
    }
    free(buf);
}

TEST(writer_rejects_bad_requests) {
    gguf_writer *w;
    hearth_error err;
    REQUIRE(gguf_writer_create(&w, &err) == HEARTH_OK);
    CHECK(gguf_writer_set_u32(w, "a", 1, &err) == HEARTH_OK);
    CHECK(gguf_writer_set_u32(w, "a", 2, &err) == HEARTH_ERR_INVALID_ARG);
    uint64_t ne[] = {31};
    float d[32] = {0};
    CHECK(gguf_writer_add_tensor(w, "q", HEARTH_DTYPE_Q4_0, 1, ne, d, &err) ==
          HEARTH_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "Q4_0") != NULL);
    gguf_writer_free(w);
}

/* Opens a (corrupted) image and expects failure with code and a message
 * containing needle. */
static void expect_bad(const uint8_t *buf, size_t len, hearth_status code, const char *needle,
                       const char *what) {
    gguf_file *f = NULL;
    hearth_error err = {HEARTH_OK, ""};
    /* Copy to an exact-size heap block so ASan sees any overread. */
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return;
    memcpy(copy, buf, len);
    hearth_status st = gguf_open_memory(copy, len, &f, &err);
    CHECKF(st == code, "%s: status %d (%s), expected %d", what, st, err.msg, code);
    CHECKF(st == HEARTH_OK || strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what,
           err.msg, needle);
    if (st == HEARTH_OK) gguf_close(f);
    free(copy);
}

/* Offset of the first occurrence of needle (n bytes) in buf. */
static size_t find_bytes(const uint8_t *buf, size_t len, const void *needle, size_t n) {
    for (size_t i = 0; i + n <= len; i++) {
        if (!memcmp(buf + i, needle, n)) return i;
    }
    return (size_t)-1;
}

static void put_u32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
}
static void put_u64(uint8_t *p, uint64_t v) {
    memcpy(p, &v, 8);
}

TEST(truncated_anywhere) {
    size_t len;
    uint8_t *buf = make_sample(&len);
    REQUIRE(buf);
    /* The file may end in padding after the last tensor; cutting that is fine. */
    gguf_file *whole;
    hearth_error err0;
    REQUIRE(gguf_open_memory(buf, len, &whole, &err0) == HEARTH_OK);
    size_t end = 0;
    for (uint64_t i = 0; i < whole->n_tensors; i++) {
        size_t e =
            (size_t)(whole->data_offset + whole->tensors[i].offset + whole->tensors[i].nbytes);
        if (e > end) end = e;
    }
    gguf_close(whole);
    CHECK(end + 32 > len);
    for (size_t cut = 0; cut < end; cut++) {
        gguf_file *f = NULL;
        hearth_error err = {HEARTH_OK, ""};
        uint8_t *copy = malloc(cut ? cut : 1);
        REQUIRE(copy);
        memcpy(copy, buf, cut);
        hearth_status st = gguf_open_memory(copy, cut, &f, &err);
        CHECKF(st == HEARTH_ERR_BAD_MODEL, "cut at %zu: status %d", cut, st);
        CHECKF(st == HEARTH_OK || strstr(err.msg, "truncated") || strstr(err.msg, "too short") ||
                   strstr(err.msg, "past the end") || strstr(err.msg, "cannot fit"),
               "cut at %zu: '%s'", cut, err.msg);
        if (st == HEARTH_OK) gguf_close(f);
        free(copy);
    }
    free(buf);
}

TEST(truncated_real_model) {
    size_t len;
    char *buf = test_read_file(test_shared("models/stories260K-q8_0.gguf"), &len);
    REQUIRE(buf);
    /* Every byte of the header region, then a stride through the data. */
    for (size_t cut = 0; cut < len; cut += cut < 20000 ? 1 : 997) {
        gguf_file *f = NULL;
        hearth_error err;
        hearth_status st = gguf_open_memory(buf, cut, &f, &err);
        CHECKF(st == HEARTH_ERR_BAD_MODEL, "cut at %zu: status %d", cut, st);
        if (st == HEARTH_OK) gguf_close(f);
    }
    free(buf);
}

TEST(corruptions_named) {
    size_t len;
    uint8_t *base = make_sample(&len);
    REQUIRE(base);
    uint8_t *b = malloc(len);
    REQUIRE(b);

    memcpy(b, base, len);
    b[0] = 'X';
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "bad magic", "bad magic");

    memcpy(b, base, len);
    put_u32(b + 4, 1);
    expect_bad(b, len, HEARTH_ERR_UNSUPPORTED, "version 1", "version 1");
    put_u32(b + 4, 0x03000000u);
    expect_bad(b, len, HEARTH_ERR_UNSUPPORTED, "big-endian", "big-endian");
    put_u32(b + 4, 7);
    expect_bad(b, len, HEARTH_ERR_UNSUPPORTED, "version 7", "version 7");

    memcpy(b, base, len);
    put_u64(b + 8, 1ull << 60);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "tensor count", "absurd tensor count");
    memcpy(b, base, len);
    put_u64(b + 16, UINT64_MAX);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "metadata count", "absurd kv count");

    /* The first key length is at offset 24. */
    memcpy(b, base, len);
    put_u64(b + 24, 1ull << 62);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "above the limit", "huge key length");
    memcpy(b, base, len);
    put_u64(b + 24, 60000);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "truncated", "key length past end");

    /* Value type of the first entry (key "general.architecture", 20 bytes). */
    memcpy(b, base, len);
    put_u32(b + 24 + 8 + 20, 99);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "unknown value type 99", "unknown kv type");

    /* Its string value length. */
    memcpy(b, base, len);
    put_u64(b + 24 + 8 + 20 + 4, (uint64_t)len);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "truncated", "string past end");

    /* The int array's count. */
    size_t at = find_bytes(base, len, "test.ints", 9);
    REQUIRE(at != (size_t)-1);
    memcpy(b, base, len);
    put_u32(b + at + 9 + 4, 42);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "unknown array element type 42", "array elem type");
    memcpy(b, base, len);
    put_u64(b + at + 9 + 8, 1ull << 61);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "past the end", "array count");

    /* A NUL byte inside a key. */
    at = find_bytes(base, len, "test.i32", 8);
    REQUIRE(at != (size_t)-1);
    memcpy(b, base, len);
    b[at + 4] = '\0';
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "NUL byte", "NUL in key");

    /* Duplicate key: rename test.i32 to test.u32. */
    at = find_bytes(base, len, "test.i32", 8);
    REQUIRE(at != (size_t)-1);
    memcpy(b, base, len);
    b[at + 5] = 'u';
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "appears twice", "duplicate key");

    /* Tensor "matrix": name, n_dims, ne0, ne1, type, offset. */
    at = find_bytes(base, len, "matrix", 6);
    REQUIRE(at != (size_t)-1);
    size_t dims = at + 6, ne0 = dims + 4, type = ne0 + 16, off = type + 4;
    memcpy(b, base, len);
    put_u32(b + dims, 5);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "5 dimensions", "n_dims 5");
    memcpy(b, base, len);
    put_u32(b + dims, 0);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "0 dimensions", "n_dims 0");
    memcpy(b, base, len);
    put_u64(b + ne0, 1ull << 62);
    put_u64(b + ne0 + 8, 1ull << 62);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "overflow", "element count overflow");
    memcpy(b, base, len);
    put_u64(b + ne0, 0);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "dimension 0 is 0", "zero dim");
    memcpy(b, base, len);
    put_u32(b + type, 99);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "unknown type 99", "unknown tensor type");
    memcpy(b, base, len);
    put_u32(b + type, 4); /* the gap in the numbering: no such type */
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "unknown type 4", "removed tensor type");
    memcpy(b, base, len);
    put_u32(b + type, HEARTH_DTYPE_Q4_0);
    put_u64(b + ne0, 48);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "block size", "row not whole blocks");
    memcpy(b, base, len);
    put_u64(b + off, 1ull << 40);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "runs past the end", "offset past end");
    memcpy(b, base, len);
    put_u64(b + off, 8);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "alignment", "misaligned offset");
    memcpy(b, base, len);
    put_u64(b + ne0 + 8, 1000);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "runs past the end", "tensor too large");

    /* Duplicate tensor name: rename "vector" to "matrix". */
    at = find_bytes(base, len, "vector", 6);
    REQUIRE(at != (size_t)-1);
    memcpy(b, base, len);
    memcpy(b + at, "matrix", 6);
    expect_bad(b, len, HEARTH_ERR_BAD_MODEL, "appears twice", "duplicate tensor");

    free(b);
    free(base);
}

TEST(bad_alignment_and_nesting) {
    gguf_writer *w;
    hearth_error err;
    REQUIRE(gguf_writer_create(&w, &err) == HEARTH_OK);
    CHECK(gguf_writer_set_u32(w, "general.alignment", 24, &err) == HEARTH_OK);
    uint8_t *buf;
    size_t len;
    REQUIRE(gguf_writer_write_memory(w, &buf, &len, &err) == HEARTH_OK);
    gguf_writer_free(w);
    expect_bad(buf, len, HEARTH_ERR_BAD_MODEL, "not a power of two", "alignment 24");
    free(buf);

    /* Arrays nested deeper than the limit: build the bytes by hand. */
    uint8_t img[512];
    size_t n = 0;
    memcpy(img, "GGUF", 4);
    put_u32(img + 4, 3);
    put_u64(img + 8, 0);
    put_u64(img + 16, 1);
    n = 24;
    put_u64(img + n, 1);
    img[n + 8] = 'k';
    n += 9;
    put_u32(img + n, GGUF_TYPE_ARRAY);
    n += 4;
    for (int depth = 0; depth < 10; depth++) {
        put_u32(img + n, GGUF_TYPE_ARRAY);
        put_u64(img + n + 4, 1);
        n += 12;
    }
    memset(img + n, 0, 40);
    n += 40;
    expect_bad(img, n, HEARTH_ERR_BAD_MODEL, "nested deeper", "deep nesting");
}

TEST(open_errors) {
    gguf_file *f;
    hearth_error err;
    CHECK(gguf_open("/nonexistent/model.gguf", true, &f, &err) == HEARTH_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/model.gguf") != NULL);
    CHECK(gguf_open(".", true, &f, &err) == HEARTH_ERR_IO);
    char path[512];
    snprintf(path, sizeof path, "%s/empty.gguf", test_tmpdir());
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp);
    fclose(fp);
    CHECK(gguf_open(path, true, &f, &err) == HEARTH_ERR_BAD_MODEL);
    CHECK(strstr(err.msg, "empty") != NULL);
    /* A text file is not a model. */
    snprintf(path, sizeof path, "%s/text.gguf", test_tmpdir());
    fp = fopen(path, "wb");
    REQUIRE(fp);
    fputs("this is not a model file at all, just some words\n", fp);
    fclose(fp);
    CHECK(gguf_open(path, false, &f, &err) == HEARTH_ERR_BAD_MODEL);
    CHECK(strstr(err.msg, "bad magic") != NULL);
}

TEST(dtype_table) {
    CHECK(dtype_block_size(HEARTH_DTYPE_Q4_0) == 32 && dtype_block_bytes(HEARTH_DTYPE_Q4_0) == 18);
    CHECK(dtype_block_size(HEARTH_DTYPE_Q8_0) == 32 && dtype_block_bytes(HEARTH_DTYPE_Q8_0) == 34);
    CHECK(dtype_block_size(HEARTH_DTYPE_Q4_K) == 256 &&
          dtype_block_bytes(HEARTH_DTYPE_Q4_K) == 144);
    CHECK(dtype_block_bytes(HEARTH_DTYPE_BF16) == 2 && dtype_block_bytes(HEARTH_DTYPE_F16) == 2);
    CHECK(!dtype_is_known(4) && !dtype_is_known(5) && !dtype_is_known(31) && !dtype_is_known(999));
    CHECK(dtype_row_bytes(HEARTH_DTYPE_Q4_0, 33) == 0);
    CHECK(dtype_row_bytes(HEARTH_DTYPE_Q4_0, 64) == 36);
    CHECK(!strcmp(hearth_dtype_name(HEARTH_DTYPE_BF16), "BF16"));
}

int main(int argc, char **argv) {
    (void)argc;
    test_init(argv[0]);
    RUN(stories_metadata_and_tensors);
    RUN(quantized_files_types);
    RUN(every_vocab_file_opens);
    RUN(writer_round_trip);
    RUN(writer_rejects_bad_requests);
    RUN(truncated_anywhere);
    RUN(truncated_real_model);
    RUN(corruptions_named);
    RUN(bad_alignment_and_nesting);
    RUN(open_errors);
    RUN(dtype_table);
    return test_finish();
}
