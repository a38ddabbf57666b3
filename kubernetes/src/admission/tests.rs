#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

fn injection() -> Injection {
    Injection::new(
        "registry.example/warden/injector:1.0",
        "/usr/local/bin/warden-injector",
        "https://warden.example:8443",
        CA,
        "prod-eu",
    )
    .unwrap()
}

fn pod_json(annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": spec,
    })
}

fn annotated(spec: Value) -> Value {
    pod_json(
        json!({"warden.dev/inject": "true", "warden.dev/service": "acme/shop/prod/api"}),
        spec,
    )
}

fn review_body(object: &Value, operation: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
        },
    }))
    .unwrap()
}

/// The response object of the answer to `object`'s creation.
fn respond(object: &Value) -> Value {
    let answer: Value =
        serde_json::from_slice(&review(&review_body(object, "CREATE"), &injection()).unwrap())
            .unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    answer["response"].clone()
}

/// Applies the answer's patch (if any) to `object`, as the API server does.
fn applied(object: &Value, response: &Value) -> Value {
    let mut out = object.clone();
    if let Some(p) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        let ops: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut out, &ops).unwrap();
    }
    out
}

fn mutated(object: &Value) -> Pod {
    let response = respond(object);
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response["patch"].is_string(), "no patch: {response}");
    serde_json::from_value(applied(object, &response)).unwrap()
}

fn denial(object: &Value) -> String {
    let response = respond(object);
    assert_eq!(response["allowed"], false, "{response}");
    assert!(response.get("patch").is_none());
    response["status"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn an_annotated_pod_gets_the_wrapper_first_and_its_command_wrapped() {
    let object = annotated(json!({
        "initContainers": [{"name": "migrate", "image": "app", "command": ["/migrate"]}],
        "containers": [
            {"name": "api", "image": "app", "command": ["/app/server"], "args": ["--port", "8080"],
             "env": [{"name": "MODE", "value": "prod"}],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }));
    let pod = mutated(&object);
    let spec = pod.spec.unwrap();
    let init = spec.init_containers.unwrap();
    assert_eq!(
        init.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        [INIT_CONTAINER, "migrate"]
    );
    assert_eq!(
        init[0].image.as_deref(),
        Some("registry.example/warden/injector:1.0")
    );
    assert_eq!(
        init[0].command.as_deref().unwrap(),
        ["cp", "/usr/local/bin/warden-injector", WRAPPER]
    );
    let security = init[0].security_context.as_ref().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let c = &spec.containers[0];
    assert_eq!(
        c.command.as_deref().unwrap(),
        [
            WRAPPER,
            "exec",
            "--service",
            "acme/shop/prod/api",
            "--",
            "/app/server"
        ]
    );
    assert_eq!(c.args.as_deref().unwrap(), ["--port", "8080"]);
    let env: Vec<(String, Option<String>)> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    assert_eq!(
        env,
        [
            ("MODE".into(), Some("prod".into())),
            (
                "WARDEN_SERVER".into(),
                Some("https://warden.example:8443".into())
            ),
            ("WARDEN_CA_PEM".into(), Some(CA.into())),
            ("WARDEN_K8S_TOKEN_FILE".into(), Some(TOKEN_FILE.into())),
            ("WARDEN_CLUSTER".into(), Some("prod-eu".into())),
        ]
    );
    let mounts = c.volume_mounts.as_ref().unwrap();
    assert_eq!(mounts.len(), 3);
    assert!(
        mounts
            .iter()
            .any(|m| m.name == BIN_VOLUME && m.mount_path == BIN_DIR && m.read_only == Some(true))
    );
    assert!(
        mounts.iter().any(|m| m.name == TOKEN_VOLUME
            && m.mount_path == TOKEN_DIR
            && m.read_only == Some(true))
    );
    let volumes = spec.volumes.unwrap();
    let bin = volumes.iter().find(|v| v.name == BIN_VOLUME).unwrap();
    assert_eq!(
        bin.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );
    let token = volumes.iter().find(|v| v.name == TOKEN_VOLUME).unwrap();
    let sources = token.projected.as_ref().unwrap().sources.as_ref().unwrap();
    let sa = sources[0].service_account_token.as_ref().unwrap();
    assert_eq!(sa.audience.as_deref(), Some("warden"));
    assert_eq!(sa.expiration_seconds, Some(3600));
    assert_eq!(sa.path, "token");
    assert_eq!(
        pod.metadata.annotations.unwrap()[ANNOTATION_INJECTED],
        "api"
    );
}

#[test]
fn the_label_asks_for_injection_as_the_annotation_does_which_wins() {
    let spec = json!({"containers": [{"name": "a", "image": "x", "command": ["/a"]}]});
    let mut labelled = pod_json(
        json!({"warden.dev/service": "acme/shop/prod/api"}),
        spec.clone(),
    );
    labelled["metadata"]["labels"] = json!({"warden.dev/inject": "true"});
    let pod = mutated(&labelled);
    assert_eq!(
        pod.spec.unwrap().containers[0].command.as_deref().unwrap()[0],
        WRAPPER
    );
    let mut vetoed = pod_json(
        json!({"warden.dev/inject": "false", "warden.dev/service": "acme/shop/prod/api"}),
        spec,
    );
    vetoed["metadata"]["labels"] = json!({"warden.dev/inject": "true"});
    assert!(respond(&vetoed).get("patch").is_none());
}

#[test]
fn a_second_review_of_a_mutated_pod_changes_nothing() {
    let object = annotated(json!({
        "containers": [{"name": "api", "image": "app", "command": ["/app/server"]}],
    }));
    let first = respond(&object);
    let once = applied(&object, &first);
    let second = respond(&once);
    assert_eq!(second["allowed"], true);
    assert!(second.get("patch").is_none(), "{second}");
    // The init container alone (the annotation removed) also marks it.
    let mut stripped = once.clone();
    stripped["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove(ANNOTATION_INJECTED);
    assert!(respond(&stripped).get("patch").is_none());
}

#[test]
fn pods_without_the_annotation_or_not_created_are_left_alone() {
    let plain = pod_json(
        json!({}),
        json!({"containers": [{"name": "a", "image": "x"}]}),
    );
    let r = respond(&plain);
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none());
    let off = pod_json(
        json!({"warden.dev/inject": "false"}),
        json!({"containers": [{"name": "a", "image": "x"}]}),
    );
    assert!(respond(&off).get("patch").is_none());
    let no_metadata_annotations = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "a", "image": "x"}]}});
    assert!(respond(&no_metadata_annotations).get("patch").is_none());
    let object = annotated(json!({"containers": [{"name": "a", "image": "x", "command": ["/a"]}]}));
    let update: Value =
        serde_json::from_slice(&review(&review_body(&object, "UPDATE"), &injection()).unwrap())
            .unwrap();
    assert_eq!(update["response"]["allowed"], true);
    assert!(update["response"].get("patch").is_none());
}

#[test]
fn a_container_without_a_command_is_refused_unless_the_annotation_gives_it() {
    let spec = json!({"containers": [
        {"name": "api", "image": "app", "args": ["--port", "8080"]},
        {"name": "side", "image": "other"},
    ]});
    let m = denial(&annotated(spec.clone()));
    assert!(m.contains("\"api\" has no command"), "{m}");
    assert!(m.contains("\"side\" has no command"), "{m}");
    assert!(m.contains("warden.dev/command.api"), "{m}");
    assert!(m.contains("never asks a registry"), "{m}");

    let object = pod_json(
        json!({
            "warden.dev/inject": "true",
            "warden.dev/service": "acme/shop/prod/api",
            "warden.dev/command.api": "[\"/docker-entrypoint.sh\", \"serve\"]",
            "warden.dev/containers": "api",
        }),
        spec,
    );
    let pod = mutated(&object);
    let containers = pod.spec.unwrap().containers;
    assert_eq!(
        containers[0].command.as_deref().unwrap()[4..],
        ["--", "/docker-entrypoint.sh", "serve"]
    );
    assert_eq!(containers[0].args.as_deref().unwrap(), ["--port", "8080"]);
    // Not listed: untouched.
    assert_eq!(containers[1].command, None);
    assert_eq!(containers[1].env, None);

    for bad in ["[]", "[\"\"]", "\"/app\"", "[1]", "not json"] {
        let object = pod_json(
            json!({
                "warden.dev/inject": "true",
                "warden.dev/service": "acme/shop/prod/api",
                "warden.dev/command.a": bad,
            }),
            json!({"containers": [{"name": "a", "image": "x"}]}),
        );
        let m = denial(&object);
        assert!(m.contains("must be a JSON array"), "{bad}: {m}");
    }
}

#[test]
fn only_the_listed_containers_are_wrapped() {
    let object = pod_json(
        json!({
            "warden.dev/inject": "true",
            "warden.dev/service": "acme/shop/prod/api",
            "warden.dev/containers": " b ,",
        }),
        json!({"containers": [
            {"name": "a", "image": "x", "command": ["/a"]},
            {"name": "b", "image": "x", "command": ["/b"]},
        ]}),
    );
    let pod = mutated(&object);
    let c = pod.spec.unwrap().containers;
    assert_eq!(c[0].command.as_deref().unwrap(), ["/a"]);
    assert_eq!(c[1].command.as_deref().unwrap()[0], WRAPPER);
    assert_eq!(pod.metadata.annotations.unwrap()[ANNOTATION_INJECTED], "b");

    for (list, want) in [("c", "names \"c\""), (",", "names no container")] {
        let object = pod_with_containers_annotation(list);
        let m = denial(&object);
        assert!(m.contains(want), "{list}: {m}");
    }
}

fn pod_with_containers_annotation(list: &str) -> Value {
    pod_json(
        json!({
            "warden.dev/inject": "true",
            "warden.dev/service": "acme/shop/prod/api",
            "warden.dev/containers": list,
        }),
        json!({"containers": [{"name": "a", "image": "x", "command": ["/a"]}]}),
    )
}

#[test]
fn bad_annotations_are_refused_with_a_message() {
    let spec = json!({"containers": [{"name": "a", "image": "x", "command": ["/a"]}]});
    for (service, want) in [
        ("acme/shop/../api", "invalid name \"..\""),
        ("acme/shop/prod", "ORG/PROJECT/ENV/SERVICE"),
        ("acme/shop/prod/api/x", "ORG/PROJECT/ENV/SERVICE"),
        ("Acme/shop/prod/api", "invalid name"),
        ("", "ORG/PROJECT/ENV/SERVICE"),
    ] {
        let object = pod_json(
            json!({"warden.dev/inject": "true", "warden.dev/service": service}),
            spec.clone(),
        );
        let m = denial(&object);
        assert!(m.starts_with("annotation warden.dev/service: "), "{m}");
        assert!(m.contains(want), "{service}: {m}");
    }
    let m = denial(&pod_json(
        json!({"warden.dev/inject": "true"}),
        spec.clone(),
    ));
    assert!(m.contains("warden.dev/service"), "{m}");
    let m = denial(&pod_json(
        json!({"warden.dev/inject": "yes", "warden.dev/service": "a/b/c/d"}),
        spec,
    ));
    assert!(m.contains("must be \"true\" or \"false\""), "{m}");
}

#[test]
fn what_the_injector_adds_must_not_clash_with_the_pod() {
    let m = denial(&annotated(json!({
        "containers": [{"name": "a", "image": "x", "command": ["/a"],
            "env": [{"name": "WARDEN_SERVER", "value": "https://elsewhere"}],
            "volumeMounts": [{"name": "v", "mountPath": "/warden/bin/"}]}],
        "volumes": [{"name": "warden-token", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
    })));
    assert!(m.contains("volume named \"warden-token\""), "{m}");
    assert!(m.contains("sets WARDEN_SERVER"), "{m}");
    assert!(m.contains("at /warden/bin/"), "{m}");
}

#[test]
fn null_and_empty_lists_are_patched_as_the_api_server_sends_them() {
    let object = annotated(json!({
        "initContainers": null,
        "volumes": [],
        "containers": [{"name": "a", "image": "x", "command": ["/a"], "env": null, "volumeMounts": []}],
    }));
    let pod = mutated(&object);
    let spec = pod.spec.unwrap();
    assert_eq!(spec.init_containers.unwrap()[0].name, INIT_CONTAINER);
    assert_eq!(spec.volumes.unwrap().len(), 2);
    assert_eq!(spec.containers[0].env.as_ref().unwrap().len(), 4);
    assert_eq!(spec.containers[0].volume_mounts.as_ref().unwrap().len(), 2);
}

#[test]
fn the_patch_leaves_fields_it_does_not_know_in_place() {
    let object = annotated(json!({
        "containers": [{"name": "a", "image": "x", "command": ["/a"], "futureField": {"x": 1}}],
        "futureSpecField": true,
    }));
    let response = respond(&object);
    let out = applied(&object, &response);
    assert_eq!(out["spec"]["futureSpecField"], true);
    assert_eq!(out["spec"]["containers"][0]["futureField"]["x"], 1);
}

#[test]
fn malformed_reviews_are_errors_not_answers() {
    let inj = injection();
    let good = review_body(
        &annotated(json!({"containers": [{"name": "a", "image": "x", "command": ["/a"]}]})),
        "CREATE",
    );
    let cut = &good[..good.len() / 2];
    match review(cut, &inj) {
        Err(ReviewError::Malformed(m)) => assert!(m.contains("ends early"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut v: Value = serde_json::from_slice(&good).unwrap();
    v["apiVersion"] = json!("admission.k8s.io/v1beta1");
    match review(&serde_json::to_vec(&v).unwrap(), &inj) {
        Err(ReviewError::Version(m)) => {
            assert!(m.contains("\"admission.k8s.io/v1beta1\""), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let mut v: Value = serde_json::from_slice(&good).unwrap();
    v["kind"] = json!("Pod");
    assert!(matches!(
        review(&serde_json::to_vec(&v).unwrap(), &inj),
        Err(ReviewError::Version(_))
    ));
    for broken in [
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "a b"}}),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}),
    ] {
        assert!(
            matches!(
                review(&serde_json::to_vec(&broken).unwrap(), &inj),
                Err(ReviewError::Malformed(_))
            ),
            "{broken}"
        );
    }
    let mut v: Value = serde_json::from_slice(&good).unwrap();
    v["request"]["object"]["spec"]["containers"] = json!("not a list");
    assert!(matches!(
        review(&serde_json::to_vec(&v).unwrap(), &inj),
        Err(ReviewError::Malformed(_))
    ));
    assert!(matches!(
        review(&vec![b' '; MAX_REVIEW_BYTES + 1], &inj),
        Err(ReviewError::TooLarge)
    ));
}

#[test]
fn a_review_of_something_else_than_a_pod_is_denied() {
    let mut v: Value = serde_json::from_slice(&review_body(
        &annotated(json!({"containers": []})),
        "CREATE",
    ))
    .unwrap();
    v["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let answer: Value =
        serde_json::from_slice(&review(&serde_json::to_vec(&v).unwrap(), &injection()).unwrap())
            .unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    let m = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        m.contains("core/v1 Pods only, got apps/v1 Deployment"),
        "{m}"
    );
}

#[test]
fn settings_that_would_put_a_key_or_plain_http_in_pods_are_refused() {
    let key = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n";
    let both = format!("{CA}{key}");
    for (image, bin, server, ca, cluster) in [
        ("img", "/bin/w", "https://w", key, "c"),
        ("img", "/bin/w", "https://w", both.as_str(), "c"),
        ("img", "/bin/w", "https://w", "not pem", "c"),
        ("img", "/bin/w", "http://w", CA, "c"),
        ("img", "/bin/w", "https://", CA, "c"),
        ("img", "bin/w", "https://w", CA, "c"),
        ("img", "/bin/../w", "https://w", CA, "c"),
        ("im g", "/bin/w", "https://w", CA, "c"),
        ("", "/bin/w", "https://w", CA, "c"),
        ("img", "/bin/w", "https://w", CA, "Prod"),
        ("img", "/bin/w", "https://w", CA, "a/b"),
    ] {
        assert!(
            Injection::new(image, bin, server, ca, cluster).is_err(),
            "{image} {bin} {server} {ca} {cluster}"
        );
    }
    assert!(Injection::new("img", "/bin/w", "https://w", CA, "c").is_ok());
}

#[test]
fn json_pointer_tokens_are_escaped() {
    assert_eq!(pointer_token("warden.dev/injected"), "warden.dev~1injected");
    assert_eq!(pointer_token("a~b/c"), "a~0b~1c");
}
