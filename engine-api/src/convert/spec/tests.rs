use serde_json::json;

use super::*;

/// What the docker CLI 28 sends for `docker service create --name web
/// -p 8080:80 --replicas 3 --health-cmd 'wget -q -O- localhost' --env A=1
/// --network front --secret s1 nginx sh -c x` (trimmed of empty fields).
fn cli_spec() -> Value {
    json!({
        "Name": "web",
        "Labels": {"com.docker.stack.namespace": "app"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "nginx",
                "Args": ["sh", "-c", "x"],
                "Env": ["A=1"],
                "Healthcheck": {"Test": ["CMD-SHELL", "wget -q -O- localhost"], "Interval": 5000000000u64},
                "Privileges": {"NoNewPrivileges": true},
                "Secrets": [{"File": {"Name": "s1", "UID": "0", "GID": "0", "Mode": 292}, "SecretID": "abc", "SecretName": "s1"}],
                "Isolation": "default"
            },
            "Resources": {"Limits": {"MemoryBytes": 67108864}, "Reservations": {}},
            "RestartPolicy": {"Condition": "on-failure", "Delay": 5000000000u64, "MaxAttempts": 3},
            "Placement": {"Constraints": ["node.role==manager"]},
            "Networks": [{"Target": "net1id", "Aliases": ["www"]}],
            "ForceUpdate": 0
        },
        "Mode": {"Replicated": {"Replicas": 3}},
        "UpdateConfig": {"Parallelism": 2, "FailureAction": "rollback", "Monitor": 5000000000u64, "MaxFailureRatio": 0, "Order": "start-first"},
        "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]}
    })
}

fn network(id: &str, name: &str) -> Network {
    Network {
        id: id.into(),
        spec: Some(swarmlet_proto::objects::NetworkSpec {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn the_clis_spec_converts() {
    let nets = [network("net1id", "front")];
    let c = from_docker(&cli_spec(), &nets).expect("converts");
    let s = &c.spec;
    assert_eq!(s.name, "web");
    assert_eq!(s.image, "nginx");
    assert_eq!(s.command, ["sh", "-c", "x"]);
    assert!(s.entrypoint.is_empty());
    assert_eq!(s.replicas, 3);
    assert_eq!(s.env, ["A=1"]);
    let h = s.health.as_ref().expect("the Healthcheck key is read");
    assert_eq!(h.test, ["CMD-SHELL", "wget -q -O- localhost"]);
    assert_eq!(h.interval_ms, 5000);
    assert_eq!(s.limit_memory_bytes, 64 << 20);
    let r = s.restart.as_ref().expect("restart policy");
    assert_eq!(r.condition(), RestartCondition::OnFailure);
    assert_eq!(r.max_attempts, 3);
    assert_eq!(s.constraints, ["node.role==manager"]);
    assert_eq!(
        s.networks,
        ["front"],
        "a network given by ID resolves to its name"
    );
    assert_eq!(s.secrets[0].name, "s1");
    let u = s.update.as_ref().expect("update config");
    assert_eq!(
        (u.parallelism, u.failure_action()),
        (2, FailureAction::Rollback)
    );
    assert_eq!(u.order(), UpdateOrder::StartFirst);
    assert_eq!(s.ports[0].published, 8080);
    assert_eq!(s.ports[0].target, 80);
    assert_eq!(s.labels["com.docker.stack.namespace"], "app");
    assert!(
        c.warnings.iter().any(|w| w.contains("Privileges")),
        "{:?}",
        c.warnings
    );
    // Only what Swarmlet does not model is kept aside.
    let extra: Value = serde_json::from_str(&s.docker_extra_json).expect("json");
    assert_eq!(
        extra["TaskTemplate"]["ContainerSpec"]["Privileges"]["NoNewPrivileges"],
        true
    );
    assert!(extra.pointer("/TaskTemplate/ContainerSpec/Image").is_none());
    assert!(extra.pointer("/Mode").is_none(), "{extra}");
}

#[test]
fn the_spec_round_trips() {
    let nets = [network("net1id", "front")];
    let c = from_docker(&cli_spec(), &nets).expect("converts");
    let back = to_docker(&c.spec, &nets);
    let cs = &back["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Image"], "nginx");
    assert_eq!(cs["Healthcheck"]["Test"][0], "CMD-SHELL", "{back}");
    assert!(cs.get("HealthCheck").is_none());
    assert_eq!(cs["Privileges"]["NoNewPrivileges"], true);
    assert_eq!(cs["Isolation"], "default");
    assert_eq!(back["Mode"]["Replicated"]["Replicas"], 3);
    assert_eq!(back["TaskTemplate"]["Networks"][0]["Target"], "net1id");
    assert_eq!(back["TaskTemplate"]["Networks"][0]["Aliases"][0], "www");
    assert_eq!(back["EndpointSpec"]["Ports"][0]["PublishedPort"], 8080);
    assert_eq!(back["UpdateConfig"]["Monitor"], 5_000_000_000i64);
    // Sent back unchanged (docker service update), it converts to the same.
    let again = from_docker(&back, &nets).expect("converts again");
    assert_eq!(again.spec, c.spec);
}

#[test]
fn replicated_without_a_count_means_one() {
    let spec = json!({"Name": "one", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}, "Mode": {"Replicated": {}}});
    let c = from_docker(&spec, &[]).expect("converts");
    assert_eq!(c.spec.replicas, 1);
    assert_eq!(to_docker(&c.spec, &[])["Mode"]["Replicated"]["Replicas"], 1);
    let no_mode = json!({"Name": "one", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}});
    assert_eq!(
        from_docker(&no_mode, &[]).expect("converts").spec.replicas,
        1
    );
}

#[test]
fn modes_convert() {
    let global = json!({"TaskTemplate": {"ContainerSpec": {"Image": "b"}}, "Mode": {"Global": {}}});
    assert_eq!(
        from_docker(&global, &[]).expect("converts").spec.mode(),
        ServiceMode::Global
    );
    let job = json!({"TaskTemplate": {"ContainerSpec": {"Image": "b"}}, "Mode": {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 5}}});
    let s = from_docker(&job, &[]).expect("converts").spec;
    assert_eq!(
        (s.mode(), s.replicas, s.max_concurrent),
        (ServiceMode::ReplicatedJob, 5, 2)
    );
}

#[test]
fn what_cannot_be_honoured_is_refused() {
    let plugin = json!({"TaskTemplate": {"PluginSpec": {"Name": "x"}}});
    assert!(from_docker(&plugin, &[])
        .expect_err("refused")
        .message
        .contains("PluginSpec"));
    let generic = json!({"TaskTemplate": {"ContainerSpec": {"Image": "b"},
        "Resources": {"Reservations": {"GenericResources": [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 1}}]}}}});
    let e = from_docker(&generic, &[]).expect_err("refused");
    assert_eq!(e.status.as_u16(), 400);
    assert!(e.message.contains("generic resources"), "{}", e.message);
    let bad = json!({"TaskTemplate": {"ContainerSpec": {"Image": 5}}});
    assert!(from_docker(&bad, &[])
        .expect_err("refused")
        .message
        .starts_with("invalid service spec"));
}

#[test]
fn a_later_change_by_swarmctl_shows() {
    let c = from_docker(&cli_spec(), &[]).expect("converts");
    let mut s = c.spec.clone();
    s.image = "nginx:2".into();
    s.health = None;
    let back = to_docker(&s, &[]);
    assert_eq!(back["TaskTemplate"]["ContainerSpec"]["Image"], "nginx:2");
    assert!(back["TaskTemplate"]["ContainerSpec"]
        .get("Healthcheck")
        .is_none());
}
