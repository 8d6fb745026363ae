/*
 * test_pkgfile.c - unit tests of lib/pkgfile.c: the zstd package file
 * (write, extract, every refusal), Ed25519 key loading, and the signed
 * instruction (round trip, tampering, unknown sites, foreign keys,
 * truncation, strict fields).
 *
 * The fixture's store keeps objects as the store does: the small ones
 * (under STORE_SMALL_MAX) as rows of store/small.db, put through a store
 * writer, big.bin (3 MiB) as a loose file.  Stores are inspected through
 * a store reader and with SQL on small.db (its documented table
 * object(sha, data)).
 */
#include "testutil.h"

#include <sqlite3.h>
#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "manifest.h"
#include "pkgfile.h"
#include "record.h"

#define BIG_SIZE (3u << 20)

/* ---- fixture: a store holding a small package ------------------------- */

struct content {
    const char    *path;
    unsigned       mode;
    const void    *data;
    size_t         len;
};

struct fx {
    char            dir[SS_PATH_MAX];
    char            store[SS_PATH_MAX];     /* objects of the package */
    char            store2[SS_PATH_MAX];    /* empty store to extract into */
    char            pck[SS_PATH_MAX];
    unsigned char  *big;
    struct content  c[6];
    size_t          nc;
    struct manifest m;
};

/* Put data into the store under its SHA-256, where the store keeps it: a
 * small object into small.db through w (committed by the caller), a large
 * one as a loose file. */
static void put_object(const char *store, struct store_writer *w, const void *data, size_t len,
                       unsigned char sha[32])
{
    char path[SS_PATH_MAX], dir[SS_PATH_MAX];

    assert_int_equal(ss_sha256(data, len, sha), 0);
    if (STORE_SMALL((int64_t)len)) {
        int has = store_writer_has(w, sha, (int64_t)len);
        assert_true(has == 0 || has == 1);
        if (!has)
            assert_int_equal(store_put_small(w, sha, data, (int64_t)len), 0);
        return;
    }
    assert_int_equal(store_object_path(store, sha, path, sizeof path), 0);
    assert_int_equal(ss_path(dir, sizeof dir, "%.*s", (int)(strrchr(path, '/') - path), path), 0);
    assert_int_equal(ss_mkdir_p(dir, 0755), 0);
    tu_write_len(path, data, len);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    static const char hello[] = "hello, world\n", last[] = "the last file\n";

    if (f == NULL || tu_mkdtemp(f->dir, sizeof f->dir, "test_pkgfile") < 0)
        return -1;
    if (ss_path(f->store, sizeof f->store, "%s/store", f->dir) < 0 ||
        ss_path(f->store2, sizeof f->store2, "%s/store2", f->dir) < 0 ||
        ss_path(f->pck, sizeof f->pck, "%s/CEN00001-1.pck", f->dir) < 0 ||
        store_init(f->store) < 0 || store_init(f->store2) < 0)
        return -1;

    /* 3 MiB: half text that compresses, half noise that does not, so the
     * stream spans many zstd blocks and buffers of both kinds. */
    f->big = malloc(BIG_SIZE);
    if (f->big == NULL)
        return -1;
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < BIG_SIZE; i++) {
        if (i < BIG_SIZE / 2) {
            f->big[i] = (unsigned char)("0123456789 abcdefghij\n"[i % 22] ^ (i / 4096 & 1));
        } else {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            f->big[i] = (unsigned char)x;
        }
    }

    /* In path order; "dup" has the same content as "a/hello". */
    struct content c[] = {
        { "a",       S_IFDIR | 0755, NULL,   0 },
        { "a/empty", S_IFREG | 0644, "",     0 },
        { "a/hello", S_IFREG | 0644, hello,  sizeof hello - 1 },
        { "big.bin", S_IFREG | 0600, f->big, BIG_SIZE },
        { "dup",     S_IFREG | 0755, hello,  sizeof hello - 1 },
        { "z.txt",   S_IFREG | 0644, last,   sizeof last - 1 },
    };
    memcpy(f->c, c, sizeof c);
    f->nc = SS_ARRAY_LEN(c);
    mf_init(&f->m);
    struct store_writer *w = NULL;
    if (store_writer_open(f->store, &w) < 0)
        return -1;
    for (size_t i = 0; i < f->nc; i++) {
        struct mf_entry e = { .path = (char *)c[i].path, .mode = c[i].mode,
                              .mtime_ns = 1700000000123456789ll + (int64_t)i };
        if (S_ISREG(c[i].mode)) {
            e.size = (int64_t)c[i].len;
            put_object(f->store, w, c[i].data, c[i].len, e.sha);
        }
        if (mf_add(&f->m, &e) < 0)
            return -1;
    }
    int r = store_writer_commit(w);
    store_writer_close(w);
    if (r < 0)
        return -1;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    int r = ss_rm_rf(f->dir);

    mf_free(&f->m);
    free(f->big);
    free(f);
    return r;
}

/* Regular files under store/objects (in its <aa> subdirectories): the
 * loose objects. */
static size_t count_loose(const char *store)
{
    char path[SS_PATH_MAX];
    size_t n = 0;

    assert_int_equal(ss_path(path, sizeof path, "%s/objects", store), 0);
    DIR *d = opendir(path);
    struct dirent *de;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        char sub[SS_PATH_MAX];
        if (de->d_name[0] == '.')
            continue;
        assert_int_equal(ss_path(sub, sizeof sub, "%s/%s", path, de->d_name), 0);
        n += tu_count(sub);
    }
    closedir(d);
    return n;
}

/* Rows of store/small.db, as another connection sees them: committed
 * small objects only. */
static size_t count_small(const char *store)
{
    char path[SS_PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t n;

    assert_int_equal(ss_path(path, sizeof path, "%s/small.db", store), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM object", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return n;
}

/* Objects of both kinds. */
static size_t count_objects(const char *store)
{
    return count_small(store) + count_loose(store);
}

static size_t count_tmp(const char *store)
{
    char path[SS_PATH_MAX];

    assert_int_equal(ss_path(path, sizeof path, "%s/.tmp", store), 0);
    return tu_count(path);
}

/* The object (sha, size) read back through a store reader into a
 * malloc'ed buffer (*got), whichever kind it is: 0, or store_get's error
 * (-ENOENT when missing). */
static int read_object(const char *store, const unsigned char sha[32], int64_t size,
                       char **got)
{
    struct store_reader *rd = NULL;
    char *buf = malloc(size > 0 ? (size_t)size : 1);
    int fd = -1, r;

    assert_non_null(buf);
    assert_int_equal(store_reader_open(store, &rd), 0);
    r = store_get(rd, sha, size, buf, &fd);
    store_reader_close(rd);
    if (r == 0 && fd >= 0) {
        /* A loose object: only large ones are loose. */
        assert_false(STORE_SMALL(size));
        for (int64_t off = 0; off < size;) {
            ssize_t n = read(fd, buf + off, (size_t)(size - off));
            assert_true(n > 0);
            off += n;
        }
        close(fd);
    } else if (r == 0) {
        assert_true(STORE_SMALL(size));
    }
    if (r < 0) {
        free(buf);
        buf = NULL;
    }
    *got = buf;
    return r;
}

/* Every regular file of the fixture is in store with its content, small
 * ones in small.db (never loose), large ones loose. */
static void assert_all_stored(const struct fx *f, const char *store)
{
    for (size_t i = 0; i < f->nc; i++) {
        if (!S_ISREG(f->c[i].mode))
            continue;
        const struct mf_entry *e = mf_find(&f->m, f->c[i].path);
        char *got;
        assert_non_null(e);
        assert_int_equal(store_has(store, e->sha), STORE_SMALL(e->size) ? 0 : 1);
        assert_int_equal(read_object(store, e->sha, e->size, &got), 0);
        assert_int_equal(e->size, (int64_t)f->c[i].len);
        if (f->c[i].len > 0)
            assert_memory_equal(got, f->c[i].data, f->c[i].len);
        free(got);
    }
}

/* Write the fixture's package file; size and SHA-256 checked against the
 * file itself. */
static void write_pck(struct fx *f, int64_t *size, unsigned char sha[32])
{
    char err[SS_ERR_MAX] = "", tmp[SS_PATH_MAX];
    size_t len;

    assert_int_equal(pck_write(f->store, &f->m, f->pck, 3, NULL, size, sha, err, sizeof err), 0);
    char *data = tu_read(f->pck, &len);
    unsigned char want[32];
    assert_int_equal(ss_sha256(data, len, want), 0);
    free(data);
    assert_int_equal(*size, (int64_t)len);
    assert_memory_equal(sha, want, 32);
    assert_int_equal(ss_path(tmp, sizeof tmp, "%s.tmp", f->pck), 0);
    assert_false(tu_exists(AT_FDCWD, tmp));
}

static void copy_manifest(const struct manifest *from, struct manifest *to)
{
    mf_init(to);
    for (size_t i = 0; i < from->n; i++)
        assert_int_equal(mf_add(to, &from->e[i]), 0);
}

/* ---- the package file ------------------------------------------------- */

static void test_pck_roundtrip(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX] = "";
    unsigned char sha[32];
    int64_t size;

    write_pck(f, &size, sha);
    /* The noise half of big.bin does not compress; the rest does. */
    assert_true(size < (int64_t)BIG_SIZE);
    assert_true(size > (int64_t)BIG_SIZE / 2);

    assert_int_equal(pck_extract(f->pck, size, sha, &f->m, f->store2, NULL, err, sizeof err), 0);
    assert_all_stored(f, f->store2);
    /* empty, hello (= dup), big, z: four distinct contents, three of them
     * small (committed: another connection sees them) and one loose. */
    assert_int_equal(count_small(f->store2), 3);
    assert_int_equal(count_loose(f->store2), 1);
    assert_int_equal(count_tmp(f->store2), 0);
    /* Loose objects are 0640, like mf_snapshot's. */
    char obj[SS_PATH_MAX];
    struct stat st;
    assert_int_equal(store_object_path(f->store2, mf_find(&f->m, "big.bin")->sha, obj,
                                       sizeof obj), 0);
    assert_int_equal(stat(obj, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);

    /* Again: everything is there, so every file is only hashed. */
    assert_int_equal(pck_extract(f->pck, size, sha, &f->m, f->store2, NULL, err, sizeof err), 0);
    assert_all_stored(f, f->store2);
    assert_int_equal(count_small(f->store2), 3);
    assert_int_equal(count_loose(f->store2), 1);
    assert_int_equal(count_tmp(f->store2), 0);
}

static void test_pck_partly_stored(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX] = "";
    unsigned char sha[32], hsha[32];
    int64_t size;

    struct store_writer *w = NULL;

    write_pck(f, &size, sha);
    assert_int_equal(store_writer_open(f->store2, &w), 0);
    put_object(f->store2, w, f->c[2].data, f->c[2].len, hsha);
    put_object(f->store2, w, f->c[3].data, f->c[3].len, hsha);
    assert_int_equal(store_writer_commit(w), 0);
    store_writer_close(w);
    assert_int_equal(count_small(f->store2), 1);
    assert_int_equal(count_loose(f->store2), 1);
    /* The loose one is the fixture's own (not rewritten): same inode. */
    char obj[SS_PATH_MAX];
    struct stat before, after;
    assert_int_equal(store_object_path(f->store2, hsha, obj, sizeof obj), 0);
    assert_int_equal(stat(obj, &before), 0);
    assert_int_equal(pck_extract(f->pck, size, sha, &f->m, f->store2, NULL, err, sizeof err), 0);
    assert_all_stored(f, f->store2);
    assert_int_equal(count_small(f->store2), 3);
    assert_int_equal(count_loose(f->store2), 1);
    assert_int_equal(stat(obj, &after), 0);
    assert_true(before.st_ino == after.st_ino);
}

static void test_pck_empty_manifest(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX] = "";
    unsigned char sha[32];
    int64_t size;
    struct manifest m;

    /* A package of directories only: a valid, empty stream. */
    mf_init(&m);
    assert_int_equal(mf_add(&m, &f->m.e[0]), 0);
    assert_int_equal(pck_write(f->store, &m, f->pck, 3, NULL, &size, sha, err, sizeof err), 0);
    assert_true(size > 0);
    assert_int_equal(pck_extract(f->pck, size, sha, &m, f->store2, NULL, err, sizeof err), 0);
    assert_int_equal(count_objects(f->store2), 0);
    mf_free(&m);
}

static void test_pck_tampered(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX] = "";
    unsigned char sha[32];
    int64_t size;
    size_t len;

    write_pck(f, &size, sha);
    char *data = tu_read(f->pck, &len);
    data[len / 2] ^= 0x01;
    tu_write_len(f->pck, data, len);
    free(data);

    assert_int_equal(pck_extract(f->pck, size, sha, &f->m, f->store2, NULL, err, sizeof err),
                     -EBADMSG);
    /* Found by the decoder, by a file's own SHA-256 or by the package
     * file's, whichever comes first: the file is read once. */
    assert_true(strstr(err, "SHA-256 mismatch") || strstr(err, "zstd") ||
                strstr(err, "does not match its SHA-256") || strstr(err, "manifest lists") ||
                strstr(err, "ends before"));
    /* Nothing wrong stored: no small object committed, no temporary left;
     * a loose object can only be one whose content matched its hash. */
    assert_int_equal(count_tmp(f->store2), 0);
}

static void test_pck_wrong_size(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX] = "";
    unsigned char sha[32];
    int64_t size;

    write_pck(f, &size, sha);
    const int64_t wrong[] = { size - 1, size + 1, 0 };
    for (size_t i = 0; i < SS_ARRAY_LEN(wrong); i++) {
        err[0] = '\0';
        assert_int_equal(pck_extract(f->pck, wrong[i], sha, &f->m, f->store2, NULL,
                                     err, sizeof err), -EBADMSG);
        assert_non_null(strstr(err, "bytes, the instruction says"));
    }
    assert_int_equal(count_objects(f->store2), 0);

    err[0] = '\0';
    char missing[SS_PATH_MAX];
    assert_int_equal(ss_path(missing, sizeof missing, "%s/none.pck", f->dir), 0);
    assert_int_equal(pck_extract(missing, size, sha, &f->m, f->store2, NULL, err, sizeof err),
                     -ENOENT);
    assert_non_null(strstr(err, "none.pck"));
}

static void test_pck_bad_file_sha(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX] = "";
    unsigned char sha[32];
    int64_t size;
    struct manifest m;

    write_pck(f, &size, sha);
    copy_manifest(&f->m, &m);
    struct mf_entry *z = &m.e[m.n - 1];
    assert_string_equal(z->path, "z.txt");
    z->sha[7] ^= 0x40;
    unsigned char bogus[32];
    memcpy(bogus, z->sha, 32);

    assert_int_equal(pck_extract(f->pck, size, sha, &m, f->store2, NULL, err, sizeof err),
                     -EBADMSG);
    assert_non_null(strstr(err, "z.txt"));
    /* The loose object before it (big.bin) was verified and stays; the
     * small ones before it were rolled back with small.db's transaction;
     * the bad one is absent, and no temporary file is left. */
    assert_int_equal(count_loose(f->store2), 1);
    assert_int_equal(store_has(f->store2, mf_find(&m, "big.bin")->sha), 1);
    assert_int_equal(count_small(f->store2), 0);
    char *got = NULL;
    assert_int_equal(read_object(f->store2, bogus, z->size, &got), -ENOENT);
    assert_int_equal(read_object(f->store2, m.e[2].sha, m.e[2].size, &got), -ENOENT);
    assert_int_equal(count_tmp(f->store2), 0);
    mf_free(&m);

    /* The right manifest afterwards stores everything. */
    assert_int_equal(pck_extract(f->pck, size, sha, &f->m, f->store2, NULL, err, sizeof err), 0);
    assert_all_stored(f, f->store2);
    assert_int_equal(count_objects(f->store2), 4);
}

/* A manifest whose sizes do not add up to the stream is refused: the
 * package file checks out (its SHA-256 is right) but the split is not. */
static void test_pck_stream_length(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX] = "";
    unsigned char sha[32];
    int64_t size;
    struct manifest m;

    write_pck(f, &size, sha);

    /* Without its last file: bytes left over. */
    mf_init(&m);
    for (size_t i = 0; i + 1 < f->m.n; i++)
        assert_int_equal(mf_add(&m, &f->m.e[i]), 0);
    assert_int_equal(pck_extract(f->pck, size, sha, &m, f->store2, NULL, err, sizeof err),
                     -EBADMSG);
    assert_non_null(strstr(err, "more data than its manifest"));
    assert_int_equal(count_tmp(f->store2), 0);
    mf_free(&m);

    /* A last file longer than the stream: it ends short. */
    copy_manifest(&f->m, &m);
    m.e[m.n - 1].size += 10;
    err[0] = '\0';
    assert_int_equal(pck_extract(f->pck, size, sha, &m, f->store2, NULL, err, sizeof err),
                     -EBADMSG);
    assert_non_null(strstr(err, "z.txt"));
    assert_int_equal(count_tmp(f->store2), 0);
    mf_free(&m);

    /* A stream cut in the middle (its own size and hash given). */
    size_t len;
    char *data = tu_read(f->pck, &len);
    unsigned char hsha[32];
    size_t cut = len / 2;
    assert_int_equal(ss_sha256(data, cut, hsha), 0);
    tu_write_len(f->pck, data, cut);
    free(data);
    err[0] = '\0';
    assert_int_equal(pck_extract(f->pck, (int64_t)cut, hsha, &f->m, f->store2, NULL,
                                 err, sizeof err), -EBADMSG);
    assert_true(err[0] != '\0');
    const struct mf_entry *z = mf_find(&f->m, "z.txt");
    char *got = NULL;
    assert_int_equal(read_object(f->store2, z->sha, z->size, &got), -ENOENT);
    /* No small object of a refused package is committed. */
    assert_int_equal(count_small(f->store2), 0);
    assert_int_equal(count_tmp(f->store2), 0);
}

static void test_pck_write_errors(void **state)
{
    /* Damage to the manifest that makes the store answer wrongly, for a
     * small object (a row of small.db) and a loose one alike: a missing
     * object is -ENOENT, one of another size -EIO, both naming the file. */
    static const struct {
        const char *label;
        const char *path;
        int         flip_sha;   /* else: size + 1 */
        int         want;
    } cases[] = {
        { "small missing", "z.txt", 1, -ENOENT },
        { "loose missing", "big.bin", 1, -ENOENT },
        { "small wrong size", "a/hello", 0, -EIO },
        { "loose wrong size", "big.bin", 0, -EIO },
    };
    struct fx *f = *state;
    char err[SS_ERR_MAX] = "", tmp[SS_PATH_MAX], of[SS_PATH_MAX];
    char missing_msg[2][SS_ERR_MAX] = { "", "" };
    unsigned char sha[32];
    int64_t size = -1;
    struct manifest m;

    assert_int_equal(ss_path(tmp, sizeof tmp, "%s.tmp", f->pck), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(cases); i++) {
        copy_manifest(&f->m, &m);
        struct mf_entry *e = (struct mf_entry *)mf_find(&m, cases[i].path);
        assert_non_null(e);
        if (cases[i].flip_sha) {
            e->sha[0] ^= 0xff;
        } else {
            e->size += 1;
            m.bytes += 1;
        }
        err[0] = '\0';
        assert_int_equal(pck_write(f->store, &m, f->pck, 3, NULL, &size, sha, err, sizeof err),
                         cases[i].want);
        assert_int_equal(ss_path(of, sizeof of, "(of %s)", cases[i].path), 0);
        if (strstr(err, of) == NULL || strncmp(err, "store object ", 13) != 0)
            fail_msg("%s: unexpected message \"%s\"", cases[i].label, err);
        if (cases[i].flip_sha)
            ss_strcpy(missing_msg[STORE_SMALL(e->size) ? 0 : 1], SS_ERR_MAX, err);
        assert_false(tu_exists(AT_FDCWD, f->pck));
        assert_false(tu_exists(AT_FDCWD, tmp));
        assert_int_equal(size, -1);
        mf_free(&m);
    }
    /* A row missing from small.db reads like a loose file missing. */
    assert_non_null(strstr(missing_msg[0], "(of z.txt): No such file or directory"));
    assert_non_null(strstr(missing_msg[1], "(of big.bin): No such file or directory"));

    /* A directory that does not exist. */
    char nodir[SS_PATH_MAX];
    assert_int_equal(ss_path(nodir, sizeof nodir, "%s/no/such.pck", f->dir), 0);
    assert_int_equal(pck_write(f->store, &f->m, nodir, 3, NULL, &size, sha, err, sizeof err),
                     -ENOENT);

    /* The leftover of a crash is replaced, and so is an older file. */
    tu_write(tmp, "half a package");
    tu_write(f->pck, "an older package");
    write_pck(f, &size, sha);
    assert_int_equal(pck_extract(f->pck, size, sha, &f->m, f->store2, NULL, err, sizeof err), 0);
    assert_all_stored(f, f->store2);
}

/* ---- keys ------------------------------------------------------------- */

static EVP_PKEY *keygen(const char *type)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(k);
    return k;
}

/* PEM text of k (private or public) into a malloc'ed string. */
static char *to_pem(EVP_PKEY *k, int priv, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;

    assert_non_null(b);
    assert_int_equal(priv ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                          : PEM_write_bio_PUBKEY(b, k), 1);
    long n = BIO_get_mem_data(b, &data);
    assert_true(n > 0);
    char *out = malloc((size_t)n + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    BIO_free(b);
    return out;
}

static void write_pem(EVP_PKEY *k, int priv, const char *path)
{
    size_t len;
    char *pem = to_pem(k, priv, &len);
    tu_write_len(path, pem, len);
    free(pem);
}

static void test_keys(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX], priv[SS_PATH_MAX], pub[SS_PATH_MAX], other[SS_PATH_MAX];
    EVP_PKEY *k = keygen("ED25519"), *x = keygen("X25519"), *got = NULL;

    assert_int_equal(ss_path(priv, sizeof priv, "%s/site.key", f->dir), 0);
    assert_int_equal(ss_path(pub, sizeof pub, "%s/site.pub", f->dir), 0);
    assert_int_equal(ss_path(other, sizeof other, "%s/other", f->dir), 0);
    write_pem(k, 1, priv);
    write_pem(k, 0, pub);

    assert_int_equal(sign_load_private(priv, &got, err, sizeof err), 0);
    assert_int_equal(EVP_PKEY_eq(got, k), 1);
    EVP_PKEY_free(got);
    assert_int_equal(sign_load_public(pub, &got, err, sizeof err), 0);
    assert_int_equal(EVP_PKEY_eq(got, k), 1);
    EVP_PKEY_free(got);
    size_t len;
    char *pem = to_pem(k, 0, &len);
    assert_int_equal(sign_load_public_pem(pem, len, &got, err, sizeof err), 0);
    assert_int_equal(EVP_PKEY_eq(got, k), 1);
    EVP_PKEY_free(got);
    /* A cut PEM is no key. */
    got = NULL;
    assert_int_equal(sign_load_public_pem(pem, len / 2, &got, err, sizeof err), -EINVAL);
    assert_null(got);
    free(pem);

    /* The wrong half of the pair, or no key at all. */
    assert_int_equal(sign_load_private(pub, &got, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not a PEM private key"));
    assert_int_equal(sign_load_public(priv, &got, err, sizeof err), -EINVAL);
    tu_write(other, "-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n");
    assert_int_equal(sign_load_private(other, &got, err, sizeof err), -EINVAL);
    assert_null(got);

    /* Another algorithm. */
    write_pem(x, 1, other);
    assert_int_equal(sign_load_private(other, &got, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not an Ed25519 key"));
    write_pem(x, 0, other);
    assert_int_equal(sign_load_public(other, &got, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not an Ed25519 key"));
    assert_null(got);

    /* No file. */
    assert_int_equal(ss_path(other, sizeof other, "%s/none.key", f->dir), 0);
    assert_int_equal(sign_load_private(other, &got, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "none.key"));

    EVP_PKEY_free(k);
    EVP_PKEY_free(x);
}

/* ---- instructions ----------------------------------------------------- */

/* The key ring of a test: one site and its public key. */
struct ring {
    const char *site;
    EVP_PKEY   *key;
    int         calls;
};

static EVP_PKEY *ring_key(void *arg, const char *site)
{
    struct ring *r = arg;

    r->calls++;
    if (r->key == NULL || strcmp(site, r->site) != 0)
        return NULL;
    /* instr_parse frees what it gets. */
    assert_int_equal(EVP_PKEY_up_ref(r->key), 1);
    return r->key;
}

static void sample_instr(struct instr *in)
{
    memset(in, 0, sizeof *in);
    strcpy(in->package, "CEN0001F");
    strcpy(in->name, "Office \\ 2000\tSR-1\nnew line");
    in->version = 7;
    strcpy(in->site, "CEN");
    in->created_ms = 1763769000123ll;
    in->pck_size = 1234567;
    for (int i = 0; i < 32; i++)
        in->pck_sha[i] = (unsigned char)(i * 7 + 1);
}

/* A signed instruction of the fixture's manifest, via the key files. */
static void build(struct fx *f, EVP_PKEY **pub, struct sbuf *b)
{
    char err[SS_ERR_MAX] = "", priv[SS_PATH_MAX], pubp[SS_PATH_MAX];
    EVP_PKEY *k = keygen("ED25519"), *sk = NULL;
    struct instr in;

    assert_int_equal(ss_path(priv, sizeof priv, "%s/site.key", f->dir), 0);
    assert_int_equal(ss_path(pubp, sizeof pubp, "%s/site.pub", f->dir), 0);
    write_pem(k, 1, priv);
    write_pem(k, 0, pubp);
    EVP_PKEY_free(k);
    assert_int_equal(sign_load_private(priv, &sk, err, sizeof err), 0);
    assert_int_equal(sign_load_public(pubp, pub, err, sizeof err), 0);

    sample_instr(&in);
    ss_sbuf_init(b);
    assert_int_equal(instr_build(b, &in, &f->m, sk, err, sizeof err), 0);
    EVP_PKEY_free(sk);
}

/* Parse a private copy of data[0..len); err filled, out/m freed. */
static int parse_copy(const char *data, size_t len, struct ring *ring,
                      struct instr *out, struct manifest *m, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    err[0] = '\0';
    int r = instr_parse(copy, len, ring_key, ring, out, m, err, errlen);
    if (r < 0)
        assert_true(err[0] != '\0');
    free(copy);
    return r;
}

/* Recompute the record's end line (the last 69 bytes) over what precedes
 * it, as a forger would. */
static void reseal(char *buf, size_t len)
{
    unsigned char sum[32];
    char hex[65];

    assert_true(len > 69);
    assert_int_equal(memcmp(buf + len - 69, "end ", 4), 0);
    assert_int_equal(ss_sha256(buf, len - 69, sum), 0);
    ss_hex(sum, 32, hex);
    memcpy(buf + len - 65, hex, 64);
}

/* Replace the first occurrence of from by to in b (sizes may differ). */
static void replace(struct sbuf *b, const char *from, const char *to)
{
    char *p = strstr(b->data, from);
    assert_non_null(p);
    size_t off = (size_t)(p - b->data), fl = strlen(from), tl = strlen(to);
    struct sbuf n;
    ss_sbuf_init(&n);
    assert_int_equal(ss_sbuf_add(&n, b->data, off), 0);
    assert_int_equal(ss_sbuf_add(&n, to, tl), 0);
    assert_int_equal(ss_sbuf_add(&n, p + fl, b->len - off - fl), 0);
    ss_sbuf_free(b);
    *b = n;
}

/* Strip the signature and end lines, sign the rest with key (as the site
 * itself would), and seal it again. */
static void resign(struct sbuf *b, EVP_PKEY *key)
{
    const size_t tail = 139 + 69;
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    char hex[129];

    assert_true(b->len > tail);
    assert_int_equal(memcmp(b->data + b->len - tail, "signature=", 10), 0);
    b->len -= tail;
    b->data[b->len] = '\0';
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, key), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)b->data, b->len), 1);
    EVP_MD_CTX_free(ctx);
    ss_hex(sig, sizeof sig, hex);
    assert_int_equal(rec_add(b, "signature", hex), 0);
    assert_int_equal(rec_end(b), 0);
}

static void test_instr_roundtrip(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX] = "";
    struct sbuf b;
    struct instr in, out;
    struct manifest m;
    struct ring ring = { "CEN", NULL, 0 };

    build(f, &ring.key, &b);
    static const char head[] = "sitesrv instruction 1\npackage=CEN0001F\nname=";
    assert_int_equal(strncmp(b.data, head, strlen(head)), 0);
    assert_non_null(strstr(b.data, "\ncreated=2025-11-21T23:50:00.123Z\n"));
    assert_non_null(strstr(b.data, "\nfiles=5\nbytes="));

    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), 0);
    assert_int_equal(ring.calls, 1);
    sample_instr(&in);
    assert_string_equal(out.package, in.package);
    assert_string_equal(out.name, in.name);
    assert_int_equal(out.version, in.version);
    assert_string_equal(out.site, in.site);
    assert_int_equal(out.created_ms, in.created_ms);
    assert_int_equal(out.pck_size, in.pck_size);
    assert_memory_equal(out.pck_sha, in.pck_sha, 32);
    assert_int_equal(mf_equal(&m, &f->m), 1);
    assert_int_equal(m.files, 5);
    assert_int_equal(m.bytes, f->m.bytes);
    mf_free(&m);

    EVP_PKEY_free(ring.key);
    ss_sbuf_free(&b);
}

static void test_instr_tampered(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX];
    struct sbuf b;
    struct instr out;
    struct manifest m;
    struct ring ring = { "CEN", NULL, 0 };

    build(f, &ring.key, &b);
    replace(&b, "\nversion=7\n", "\nversion=8\n");

    /* As it is, the record's checksum catches it. */
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "checksum"));
    assert_int_equal(m.n, 0);

    /* With the checksum fixed, only the signature can. */
    reseal(b.data, b.len);
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "signature does not verify"));
    assert_int_equal(m.n, 0);

    /* The same with a file's hash in the manifest changed. */
    ss_sbuf_free(&b);
    EVP_PKEY_free(ring.key);
    build(f, &ring.key, &b);
    char hex[65];
    ss_hex(mf_find(&f->m, "z.txt")->sha, 32, hex);
    char *p = strstr(b.data, hex);
    assert_non_null(p);
    p[10] = p[10] == '0' ? '1' : '0';
    reseal(b.data, b.len);
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), -EPERM);

    EVP_PKEY_free(ring.key);
    ss_sbuf_free(&b);
}

static void test_instr_unknown_site(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX];
    struct sbuf b;
    struct instr out;
    struct manifest m;
    struct ring ring = { "PRI", NULL, 0 };

    build(f, &ring.key, &b);
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "no key recorded for site CEN"));
    assert_int_equal(ring.calls, 1);

    EVP_PKEY_free(ring.key);
    ss_sbuf_free(&b);
}

static void test_instr_other_key(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX];
    struct sbuf b;
    struct instr out;
    struct manifest m;
    struct ring ring = { "CEN", NULL, 0 };
    EVP_PKEY *pub;

    build(f, &pub, &b);
    ring.key = keygen("ED25519");
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "signature does not verify"));

    /* Signed again by that other key, it verifies with it. */
    resign(&b, ring.key);
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), 0);
    mf_free(&m);

    /* A key of another algorithm recorded for the site. */
    EVP_PKEY_free(ring.key);
    ring.key = keygen("X25519");
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "not an Ed25519 key"));

    EVP_PKEY_free(ring.key);
    EVP_PKEY_free(pub);
    ss_sbuf_free(&b);
}

static void test_instr_truncated(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX];
    struct sbuf b;
    struct instr out;
    struct manifest m;
    struct ring ring = { "CEN", NULL, 0 };

    build(f, &ring.key, &b);
    const size_t cuts[] = { 0, 1, 22, b.len / 2, b.len - 139 - 69, b.len - 70,
                            b.len - 69, b.len - 1 };
    for (size_t i = 0; i < SS_ARRAY_LEN(cuts); i++) {
        assert_int_equal(parse_copy(b.data, cuts[i], &ring, &out, &m, err, sizeof err),
                         -EBADMSG);
        assert_int_equal(m.n, 0);
    }
    /* Nothing was looked up for a file that is not even a record. */
    assert_int_equal(ring.calls, 0);

    EVP_PKEY_free(ring.key);
    ss_sbuf_free(&b);
}

/* Instructions the origin did sign, but which are malformed: the signer
 * is trusted, the content never is. */
static void test_instr_strict(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX], priv[SS_PATH_MAX];
    struct instr out;
    struct manifest m;
    struct ring ring = { "CEN", NULL, 0 };
    EVP_PKEY *sk = NULL;
    char bytes[64];

    snprintf(bytes, sizeof bytes, "\nbytes=%lld\n", (long long)f->m.bytes);
    static const struct {
        const char *label, *from, *to, *want;
        int rc;
    } t[] = {
        { "files count",     "\nfiles=5\n",        "\nfiles=6\n",   "files=6", -EBADMSG },
        { "version 0",       "\nversion=7\n",      "\nversion=0\n", "version", -EBADMSG },
        { "version text",    "\nversion=7\n",      "\nversion=7a\n", "version", -EBADMSG },
        { "pck_size < 0",    "\npck_size=1234567\n", "\npck_size=-1\n", "pck_size", -EBADMSG },
        { "upper hex",       "\npck_sha256=01", "\npck_sha256=0A", "pck_sha256", -EBADMSG },
        { "bad package",     "\npackage=CEN0001F\n", "\npackage=CEN0001f\n", "package", -EBADMSG },
        { "bad created",     "\ncreated=2025",     "\ncreated=x025", "creation time", -EBADMSG },
        { "unknown field",   "\nfiles=5\n",        "\nfiles=5\ncolour=red\n", "colour", -EBADMSG },
        { "repeated field",  "\nfiles=5\n",        "\nfiles=5\nfiles=5\n", "repeated", -EBADMSG },
        { "empty name",      "\nname=Office \\\\ 2000\\tSR-1\\nnew line\n", "\nname=\n",
          "package name", -EBADMSG },
        { "NUL in name",     "\nname=Office \\\\ 2000\\tSR-1\\nnew line\n", "\nname=a\\x00b\n",
          "package name", -EBADMSG },
        { "newer version",   "sitesrv instruction 1\n", "sitesrv instruction 2\n", "newer", -EBADMSG },
        { "other kind",      "sitesrv instruction 1\n", "sitesrv job 1\n", "kind job", -EBADMSG },
        { "bad site",        "\nsite=CEN\n",       "\nsite=cen\n",  "site", -EBADMSG },
        { "no site",         "\nsite=CEN\n",       "\n",            "missing field site", -EBADMSG },
    };

    assert_int_equal(ss_path(priv, sizeof priv, "%s/site.key", f->dir), 0);
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        struct sbuf b;
        EVP_PKEY_free(ring.key);
        build(f, &ring.key, &b);
        assert_int_equal(sign_load_private(priv, &sk, err, sizeof err), 0);
        replace(&b, t[i].from, t[i].to);
        resign(&b, sk);
        EVP_PKEY_free(sk);
        int r = parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err);
        if (r != t[i].rc || strstr(err, t[i].want) == NULL)
            fail_msg("%s: got %d \"%s\", want %d \"%s\"", t[i].label, r, err, t[i].rc,
                     t[i].want);
        assert_int_equal(m.n, 0);
        ss_sbuf_free(&b);
    }

    /* A bytes total that disagrees with the manifest. */
    struct sbuf b;
    EVP_PKEY_free(ring.key);
    build(f, &ring.key, &b);
    assert_int_equal(sign_load_private(priv, &sk, err, sizeof err), 0);
    replace(&b, bytes, "\nbytes=1\n");
    resign(&b, sk);
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "bytes=1"));

    /* A field after the signature (the record sealed again). */
    ss_sbuf_free(&b);
    EVP_PKEY_free(ring.key);
    build(f, &ring.key, &b);
    b.len -= 69;
    b.data[b.len] = '\0';
    assert_int_equal(rec_add(&b, "files", "5"), 0);
    assert_int_equal(rec_end(&b), 0);
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "not its last field"));

    /* A signature that is not 128 lower-case hex digits (sealed again). */
    ss_sbuf_free(&b);
    EVP_PKEY_free(ring.key);
    build(f, &ring.key, &b);
    char *sig = b.data + b.len - 69 - 139 + 10;
    sig[5] = 'G';
    reseal(b.data, b.len);
    assert_int_equal(parse_copy(b.data, b.len, &ring, &out, &m, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "malformed signature"));

    EVP_PKEY_free(sk);
    EVP_PKEY_free(ring.key);
    ss_sbuf_free(&b);
}

static void test_instr_build_refuses(void **state)
{
    struct fx *f = *state;
    char err[SS_ERR_MAX];
    EVP_PKEY *ed = keygen("ED25519"), *x = keygen("X25519");
    struct instr in;
    struct sbuf b;

    ss_sbuf_init(&b);
    static const struct {
        const char *label, *package, *site, *name;
        long long version;
    } t[] = {
        { "package ID", "CEN0001", "CEN", "n", 1 },
        { "lower case", "cen0001F", "CEN", "n", 1 },
        { "site",       "CEN0001F", "CE", "n", 1 },
        { "version 0",  "CEN0001F", "CEN", "n", 0 },
        { "no name",    "CEN0001F", "CEN", "", 1 },
    };
    for (size_t i = 0; i < SS_ARRAY_LEN(t); i++) {
        sample_instr(&in);
        strcpy(in.package, t[i].package);
        strcpy(in.site, t[i].site);
        strcpy(in.name, t[i].name);
        in.version = t[i].version;
        if (instr_build(&b, &in, &f->m, ed, err, sizeof err) != -EINVAL)
            fail_msg("%s: accepted", t[i].label);
        assert_int_equal(b.len, 0);
    }
    sample_instr(&in);
    assert_int_equal(instr_build(&b, &in, &f->m, x, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not an Ed25519 key"));
    assert_int_equal(instr_build(&b, &in, &f->m, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(b.len, 0);
    /* The buffer must be empty: the record is all of it. */
    assert_int_equal(ss_sbuf_adds(&b, "x"), 0);
    assert_int_equal(instr_build(&b, &in, &f->m, ed, err, sizeof err), -EINVAL);

    ss_sbuf_free(&b);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pck_roundtrip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pck_partly_stored, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pck_empty_manifest, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pck_tampered, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pck_wrong_size, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pck_bad_file_sha, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pck_stream_length, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pck_write_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_keys, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_instr_roundtrip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_instr_tampered, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_instr_unknown_site, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_instr_other_key, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_instr_truncated, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_instr_strict, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_instr_build_refuses, fx_setup, fx_teardown),
    };

    setenv(SS_NOFSYNC_ENV, "1", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
