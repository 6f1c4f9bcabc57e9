/*
 * story.c: what an application written in C does with Tessera, from first start to a returned
 * borrowed seat, against a real back office and license server. Run by tests/story.rs (plainly
 * and under valgrind), which prepares the servers, the keys and the unlock code:
 *
 *   story PRODUCER_PUB UNLOCK_PUB BACKOFFICE_URL SERVER_URL DIR EXPORT_KEY UNLOCK_KEY UNLOCK_CODE PC_ID
 *
 * The product is "cad" with features modeler, render, export, simulate (in that order); modeler is
 * basic, the trial lasts 60 days, EXPORT_KEY activates export online (30-day grace), UNLOCK_CODE
 * unlocks render for UNLOCK_KEY on this computer (PC_ID), and the license server has 1 seat of
 * simulate. Prints each step; exits 0 when every step went as expected, 1 at the first that did
 * not (naming it), 2 on a usage error.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tessera.h"

static int failures = 0;

/* Stops the story at the first unexpected result, with the library's last error. */
#define EXPECT(cond, what)                                                                     \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "story.c:%d: FAILED: %s\n  last error: %s\n", __LINE__, what,      \
                    tessera_last_error());                                                     \
            failures++;                                                                        \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)

/* Expects a status, naming both when it differs. */
#define EXPECT_STATUS(call, want)                                                              \
    do {                                                                                       \
        TesseraStatus got_ = (call);                                                           \
        if (got_ != (want)) {                                                                  \
            fprintf(stderr, "story.c:%d: FAILED: %s gave %s, expected %s\n  last error: %s\n", \
                    __LINE__, #call, tessera_status_name(got_), tessera_status_name(want),     \
                    tessera_last_error());                                                     \
            failures++;                                                                        \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = (len + 4096 + 1) * 2;
            char *bigger = realloc(buf, cap);
            if (!bigger) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = bigger;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096) {
            break;
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    size_t n = fwrite(text, 1, strlen(text), f);
    fclose(f);
    return n == strlen(text) ? 0 : -1;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The seat's events, counted by the callback on the heartbeat thread. */
struct events {
    int seen;
    TesseraSeatEvent last;
};

static void on_seat_event(void *user_data, TesseraSeatEvent event, TesseraStatus status,
                          const char *message) {
    struct events *ev = user_data;
    ev->seen++;
    ev->last = event;
    printf("seat event: %d (%s) %s\n", (int)event, tessera_status_name(status), message);
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr,
                "usage: %s PRODUCER_PUB UNLOCK_PUB BACKOFFICE_URL SERVER_URL DIR EXPORT_KEY "
                "UNLOCK_KEY UNLOCK_CODE PC_ID\n",
                argv[0]);
        return 2;
    }
    const char *backoffice = argv[3], *server = argv[4], *dir = argv[5];
    const char *export_key = argv[6], *unlock_key = argv[7], *unlock_code = argv[8];
    const char *expected_pc_id = argv[9];
    char *producer_pem = read_file(argv[1]);
    char *unlock_pem = read_file(argv[2]);
    if (!producer_pem || !unlock_pem) {
        fprintf(stderr, "cannot read the keys %s and %s\n", argv[1], argv[2]);
        free(producer_pem);
        free(unlock_pem);
        return 2;
    }
    char state[1024], backup[1024], tampered[1024], missing[1024], stored[1100];
    snprintf(state, sizeof state, "%s/state", dir);
    snprintf(backup, sizeof backup, "%s/backup", dir);
    snprintf(tampered, sizeof tampered, "%s/tampered.lic", dir);
    snprintf(missing, sizeof missing, "%s/no-such.lic", dir);
    snprintf(stored, sizeof stored, "%s/license.lic", state);

    const char *features[] = {"modeler", "render", "export", "simulate"};
    const char *basic[] = {"modeler"};
    TesseraConfig *config = NULL, *other = NULL;
    TesseraClient *client = NULL, *strict = NULL;
    TesseraGrant *grant = NULL;
    TesseraLicense *license = NULL;
    TesseraSeat *seat = NULL, *second = NULL;
    char *license_text = NULL, *version = NULL;
    struct events events = {0, TESSERA_SEAT_EVENT_OTHER};

    printf("libtessera_ffi %s\n", tessera_version());

    /* --- misuse is a status, never a crash --- */
    EXPECT_STATUS(tessera_config_new(NULL, producer_pem, &config), TESSERA_STATUS_NULL_ARGUMENT);
    EXPECT(strstr(tessera_last_error(), "product") != NULL, "the message names the argument");
    EXPECT_STATUS(tessera_config_new("cad", producer_pem, NULL), TESSERA_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(tessera_config_new("cad", "not a key", &config),
                  TESSERA_STATUS_INVALID_PRODUCER_KEY);
    EXPECT(config == NULL, "no configuration on failure");
    EXPECT_STATUS(tessera_config_new("cad", "\xff\xfe", &config), TESSERA_STATUS_INVALID_UTF8);
    EXPECT_STATUS(tessera_client_check(NULL, "render", "1.0", &grant),
                  TESSERA_STATUS_NULL_ARGUMENT);
    EXPECT(tessera_client_pc_id(NULL) == NULL, "no PC id of no client");
    EXPECT(tessera_grant_days_left(NULL) == -1, "a NULL grant reads as nothing");
    tessera_client_free(NULL);
    tessera_seat_free(NULL);
    EXPECT_STATUS(tessera_seat_release(NULL), TESSERA_STATUS_NULL_ARGUMENT);
    printf("misuse: statuses, no crash\n");

    /* --- the configuration an application builds at start --- */
    EXPECT_STATUS(tessera_config_new("cad", producer_pem, &config), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_unlock_codes(config, unlock_pem, features, 4), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_trial(config, 60, basic, 1), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_state_dirs(config, state, backup), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_state_secret(config, (const uint8_t *)"acme", 4),
                  TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_backoffice(config, backoffice), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_timeout_ms(config, 20000), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_checkout_timeout_ms(config, 30000), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_unlock_codes(config, "not a key", features, 4),
                  TESSERA_STATUS_INVALID_UNLOCK_KEY);
    EXPECT_STATUS(tessera_client_new(config, &client), TESSERA_STATUS_OK);

    /* --- the PC identifier the user gives for an unlock code --- */
    EXPECT(strcmp(tessera_client_pc_id(client), expected_pc_id) == 0, "the PC identifier");
    printf("pc id: %s\n", tessera_client_pc_id(client));

    /* --- first start: a 60-day trial --- */
    TesseraTrial trial;
    EXPECT_STATUS(tessera_client_trial_status(client, &trial), TESSERA_STATUS_OK);
    EXPECT(trial.active && trial.days_left == 60, "a 60-day trial runs");
    EXPECT_STATUS(tessera_client_check(client, "render", "1.0", &grant), TESSERA_STATUS_OK);
    EXPECT(tessera_grant_source(grant) == TESSERA_SOURCE_TRIAL, "render from the trial");
    EXPECT(tessera_grant_days_left(grant) == 60, "60 days left");
    EXPECT(strcmp(tessera_grant_feature(grant), "render") == 0, "the grant's feature");
    EXPECT(tessera_grant_licensee(grant) == NULL, "a trial has no licensee");
    tessera_grant_free(grant);
    grant = NULL;
    printf("trial: render, %d days left\n", (int)trial.days_left);
    EXPECT_STATUS(tessera_client_check(client, "render", "one", NULL),
                  TESSERA_STATUS_INVALID_VERSION);

    /* --- an unlock code typed in --- */
    int64_t code_expires = 0;
    EXPECT_STATUS(tessera_client_apply_unlock_code(client, unlock_key, "AAAAA-AAAAA", NULL),
                  TESSERA_STATUS_INVALID_UNLOCK_CODE);
    EXPECT_STATUS(tessera_client_apply_unlock_code(client, unlock_key, unlock_code, &code_expires),
                  TESSERA_STATUS_OK);
    EXPECT(code_expires == -1, "a permanent code");
    EXPECT_STATUS(tessera_client_check(client, "render", "1.0", &grant), TESSERA_STATUS_OK);
    EXPECT(tessera_grant_source(grant) == TESSERA_SOURCE_UNLOCK_CODE, "render unlocked");
    EXPECT(tessera_grant_days_left(grant) == -1, "for good");
    tessera_grant_free(grant);
    grant = NULL;
    printf("unlock code: render unlocked\n");

    /* --- online activation, with its grace period --- */
    char typo[128];
    snprintf(typo, sizeof typo, "%s", export_key);
    typo[1] = typo[1] == 'A' ? 'B' : 'A';
    EXPECT_STATUS(tessera_client_activate(client, typo, NULL), TESSERA_STATUS_INVALID_KEY);
    EXPECT(strstr(tessera_last_error(), "typo") != NULL, "a typo is said as one");
    EXPECT_STATUS(tessera_client_activate(client, export_key, &license), TESSERA_STATUS_OK);
    EXPECT(tessera_license_grace_days(license) == 30, "a 30-day grace period");
    EXPECT(tessera_license_feature_count(license) >= 1, "the license holds features");
    tessera_license_free(license);
    license = NULL;
    EXPECT_STATUS(tessera_client_check(client, "export", "1.0", &grant), TESSERA_STATUS_OK);
    EXPECT(tessera_grant_source(grant) == TESSERA_SOURCE_LICENSE, "export licensed");
    EXPECT(tessera_grant_days_left(grant) == 30, "30 days of grace left");
    EXPECT(tessera_grant_licensee(grant) != NULL && tessera_grant_license_id(grant) != NULL,
           "what an About box shows");
    printf("activated: export, licensed to %s, %d days left\n", tessera_grant_licensee(grant),
           (int)tessera_grant_days_left(grant));
    tessera_grant_free(grant);
    grant = NULL;

    /* --- the license file verified offline --- */
    EXPECT_STATUS(tessera_client_license(client, &license), TESSERA_STATUS_OK);
    int has_export = 0;
    for (size_t i = 0; i < tessera_license_feature_count(license); i++) {
        has_export |= strcmp(tessera_license_feature_name(license, i), "export") == 0;
        EXPECT(tessera_license_feature_version(license, i) != NULL, "each record's version");
    }
    EXPECT(has_export, "the license file holds export");
    EXPECT(tessera_license_feature_name(license, 99) == NULL, "out of range is NULL");
    EXPECT(strstr(tessera_last_error(), "out of range") != NULL, "and says why");
    printf("license file: %s, issued by %s\n", tessera_license_id(license),
           tessera_license_issuer(license));
    tessera_license_free(license);
    license = NULL;
    /* a configured license file that is missing, then one edited by hand */
    EXPECT_STATUS(tessera_config_new("cad", producer_pem, &other), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_state_dirs(other, state, backup), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_state_secret(other, (const uint8_t *)"acme", 4),
                  TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_config_license_path(other, missing), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_client_new(other, &strict), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_client_check(strict, "export", "1.0", NULL),
                  TESSERA_STATUS_LICENSE_FILE_MISSING);
    tessera_client_free(strict);
    strict = NULL;
    license_text = read_file(stored);
    EXPECT(license_text != NULL, "the activated license is stored");
    /* one character of the signed claims changed */
    char *claims = strchr(license_text, '.');
    EXPECT(claims != NULL && strlen(claims) > 20, "a license is a signed token");
    claims[10] = claims[10] == 'A' ? 'B' : 'A';
    EXPECT(write_file(tampered, license_text) == 0, "writing the edited copy");
    EXPECT_STATUS(tessera_config_license_path(other, tampered), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_client_new(other, &strict), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_client_check(strict, "export", "1.0", NULL),
                  TESSERA_STATUS_INVALID_LICENSE);
    printf("license file: a missing or edited file is refused\n");

    /* --- a floating seat with its heartbeat --- */
    EXPECT_STATUS(tessera_client_checkout(client, NULL, "simulate", "1.0", 1, 0, &seat),
                  TESSERA_STATUS_NO_SERVER);
    EXPECT_STATUS(tessera_client_checkout(client, server, "simulate", "1.0", 0, 0, &seat),
                  TESSERA_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(tessera_client_checkout(client, server, "simulate", "1.0", 1, 0, &seat),
                  TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_seat_on_event(seat, on_seat_event, &events), TESSERA_STATUS_OK);
    EXPECT(tessera_seat_state(seat) == TESSERA_SEAT_STATE_HELD, "the seat is held");
    EXPECT(tessera_seat_lease(seat) > 0 && tessera_seat_count(seat) == 1, "one seat, a lease");
    EXPECT(strcmp(tessera_seat_feature(seat), "simulate") == 0, "the seat's feature");
    version = tessera_seat_granted_version(seat);
    EXPECT(version != NULL && strlen(version) > 0, "the version granted");
    printf("seat: simulate %s, lease %llu\n", version,
           (unsigned long long)tessera_seat_lease(seat));
    tessera_string_free(version);
    version = NULL;
    EXPECT_STATUS(tessera_client_check(client, "simulate", "1.0", &grant), TESSERA_STATUS_OK);
    EXPECT(tessera_grant_source(grant) == TESSERA_SOURCE_SEAT, "simulate from the seat");
    tessera_grant_free(grant);
    grant = NULL;
    /* the only seat is taken: a second checkout is refused with a code to switch on */
    TesseraStatus st = tessera_client_checkout(strict, server, "simulate", "1.0", 1, 0, &second);
    EXPECT(st == TESSERA_STATUS_REFUSED_ALL_IN_USE, tessera_status_name(st));
    EXPECT(strcmp(tessera_last_refusal(), "all_in_use") == 0, "the refusal's code");
    printf("second seat: refused (%s): %s\n", tessera_status_name(st), tessera_last_error());
    /* the heartbeat renews the lease (3-second leases) */
    for (int i = 0; i < 300 && tessera_seat_renewals(seat) < 2; i++) {
        sleep_ms(100);
    }
    EXPECT(tessera_seat_renewals(seat) >= 2, "the heartbeat renewed the lease");
    EXPECT(tessera_seat_state(seat) == TESSERA_SEAT_STATE_HELD, "still held");
    printf("heartbeat: %llu renewals\n", (unsigned long long)tessera_seat_renewals(seat));
    EXPECT_STATUS(tessera_seat_release(seat), TESSERA_STATUS_OK);
    seat = NULL;
    printf("seat returned\n");
    /* returned: another client gets it now */
    EXPECT_STATUS(tessera_client_checkout(strict, server, "simulate", "1.0", 1, 0, &second),
                  TESSERA_STATUS_OK);
    tessera_seat_free(second);
    second = NULL;

    /* --- a borrowed seat, used offline and returned early --- */
    int64_t due = 0;
    EXPECT_STATUS(tessera_client_borrow(client, server, "simulate", "1.0", 3, &due),
                  TESSERA_STATUS_OK);
    EXPECT(due > (int64_t)time(NULL) + 2 * 86400, "borrowed for 3 days");
    EXPECT_STATUS(tessera_client_check(client, "simulate", "1.0", &grant), TESSERA_STATUS_OK);
    EXPECT(tessera_grant_source(grant) == TESSERA_SOURCE_BORROWED, "simulate borrowed");
    EXPECT(tessera_grant_days_left(grant) == 3, "3 days left");
    tessera_grant_free(grant);
    grant = NULL;
    printf("borrowed: simulate, 3 days left\n");
    EXPECT_STATUS(tessera_client_return_borrowed(client, "simulate"), TESSERA_STATUS_OK);
    EXPECT_STATUS(tessera_client_return_borrowed(client, "simulate"),
                  TESSERA_STATUS_FEATURE_NOT_LICENSED);
    EXPECT_STATUS(tessera_client_check(client, "simulate", "1.0", &grant), TESSERA_STATUS_OK);
    EXPECT(tessera_grant_source(grant) == TESSERA_SOURCE_TRIAL, "back to the trial");
    tessera_grant_free(grant);
    grant = NULL;
    printf("borrowed seat returned\n");

    /* --- a server that cannot be reached --- */
    EXPECT_STATUS(tessera_client_borrow(client, "http://127.0.0.1:9", "simulate", "1.0", 1, NULL),
                  TESSERA_STATUS_UNREACHABLE);
    EXPECT(strstr(tessera_last_error(), "could not be reached") != NULL, "said so");
    EXPECT(strcmp(tessera_status_name(TESSERA_STATUS_REFUSED_ALL_IN_USE),
                  "TESSERA_STATUS_REFUSED_ALL_IN_USE") == 0,
           "status names");
    EXPECT(strcmp(tessera_status_name(12345), "TESSERA_STATUS_UNKNOWN") == 0, "unknown status");
    printf("story: every step passed\n");

done:
    tessera_grant_free(grant);
    tessera_license_free(license);
    tessera_seat_free(seat);
    tessera_seat_free(second);
    tessera_client_free(strict);
    tessera_client_free(client);
    tessera_config_free(other);
    tessera_config_free(config);
    tessera_string_free(version);
    free(license_text);
    free(producer_pem);
    free(unlock_pem);
    return failures == 0 ? 0 : 1;
}
