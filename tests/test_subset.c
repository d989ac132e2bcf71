/* test_subset.c: class lists, Floyd's n of m, per-class reservoir sampling (lib/subset.h). */
#include "check.h"
#include "subset.h"

TEST(classes_by_name_and_index) {
    ds_header h;
    int map[DS_MAXCLASS];
    char err[256];
    ds_header_cifar10(&h, 0);
    CHECK(subset_classes("dog,cat", &h, map, err, sizeof err) == 2, "%s", err);
    CHECK(map[5] == 0 && map[3] == 1 && map[0] == -1 && map[9] == -1, "map %d %d %d", map[5], map[3], map[0]);
    CHECK(subset_classes("9,0", &h, map, err, sizeof err) == 2, "%s", err);
    CHECK(map[9] == 0 && map[0] == 1, "map %d %d", map[9], map[0]);
    CHECK(subset_classes("truck", &h, map, err, sizeof err) == 1 && map[9] == 0, "%s", err);
}

TEST(classes_errors) {
    ds_header h;
    int map[DS_MAXCLASS];
    char err[256];
    ds_header_cifar10(&h, 0);
    CHECK(subset_classes("10", &h, map, err, sizeof err) == -1, "index 10 accepted");
    CHECK(subset_classes("cat,3", &h, map, err, sizeof err) == -1 && strstr(err, "twice"), "%s", err);
    CHECK(subset_classes("cat,", &h, map, err, sizeof err) == -1 && strstr(err, "empty"), "%s", err);
    CHECK(subset_classes("", &h, map, err, sizeof err) == -1, "empty list accepted");
    CHECK(subset_classes("Cat", &h, map, err, sizeof err) == -1, "names are case-sensitive");
    CHECK(subset_classes("-1", &h, map, err, sizeof err) == -1, "negative index accepted");
    /* a class whose name is a number: the name wins */
    strcpy(h.classes[0], "7");
    CHECK(subset_classes("7", &h, map, err, sizeof err) == 1 && map[0] == 0 && map[7] == -1, "name must win");
}

TEST(choose_n_of_m) {
    uint8_t bits[16];
    uint64_t hits[100] = {0};
    for (int trial = 0; trial < 2000; trial++) {
        rng r;
        rng_seed(&r, (uint64_t)trial, 2);
        memset(bits, 0, sizeof bits);
        subset_choose(&r, 100, 10, bits);
        int n = 0;
        for (int i = 0; i < 100; i++) {
            n += subset_bit(bits, (uint64_t)i);
            hits[i] += subset_bit(bits, (uint64_t)i);
        }
        CHECK(n == 10, "trial %d chose %d", trial, n);
    }
    /* each position chosen with probability 1/10: 200 expected in 2000 trials */
    for (int i = 0; i < 100; i++) CHECK(hits[i] > 130 && hits[i] < 270, "position %d chosen %d times", i, (int)hits[i]);
    rng r;
    rng_seed(&r, 1, 2);
    memset(bits, 0, sizeof bits);
    subset_choose(&r, 5, 5, bits);
    CHECK(bits[0] == 0x1f, "all 5 of 5: %x", bits[0]);
}

TEST(reservoir_balanced_and_ordered) {
    reservoir rs;
    rng r;
    uint8_t px[4];
    uint64_t first_hits = 0;
    for (int trial = 0; trial < 200; trial++) {
        res_init(&rs, 5, sizeof px);
        rng_seed(&r, (uint64_t)trial, 1);
        for (uint64_t i = 0; i < 300; i++) { /* class i % 3; class 2 only 3 times (2, 5, 8) */
            int c = (int)(i % 3);
            if (c == 2 && i > 10) continue;
            memcpy(px, &i, sizeof px);
            CHECK(res_add(&rs, &r, c, i, (uint8_t)c, px) == 0, "res_add");
        }
        size_t n;
        res_entry *e = res_sorted(&rs, &n);
        CHECK(n == 13, "kept %zu", n);
        int per[3] = {0};
        for (size_t j = 0; j < n; j++) {
            per[e[j].cls]++;
            uint32_t idx;
            memcpy(&idx, res_pixels(&rs, &e[j]), 4);
            CHECK(idx == e[j].index && res_label(&rs, &e[j]) == e[j].index % 3, "record %zu mixed up", j);
            if (j) CHECK(e[j].index > e[j - 1].index, "not in input order at %zu", j);
            if (e[j].index < 15) first_hits++;
        }
        CHECK(per[0] == 5 && per[1] == 5 && per[2] == 3, "per class %d %d %d", per[0], per[1], per[2]);
        free(e);
        res_free(&rs);
    }
    /* classes 0 and 1 have 100 records each, each kept with probability 5/100: of the 13
     * records under index 15 (5 + 5 + class 2's 3, always kept) about 3.5 per trial stay,
     * 13 if the reservoir never replaced its first records */
    CHECK(first_hits > 200 * 3 && first_hits < 200 * 5, "records under 15 kept %d times", (int)first_hits);
}

int main(void) {
    RUN(classes_by_name_and_index);
    RUN(classes_errors);
    RUN(choose_n_of_m);
    RUN(reservoir_balanced_and_ordered);
    return DONE();
}
