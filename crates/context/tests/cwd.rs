//! `-f` relative to the current directory. Alone in its test binary: it
//! changes the process's working directory.

use std::fs;

#[test]
fn dash_f_is_relative_to_the_current_directory_for_a_directory_context() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("ctx")).unwrap();
    fs::create_dir_all(t.path().join("build")).unwrap();
    fs::write(t.path().join("ctx/Dockerfile"), "FROM in-context\n").unwrap();
    fs::write(t.path().join("build/Dockerfile"), "FROM beside-cwd\n").unwrap();
    fs::write(t.path().join("build/Dockerfile.dockerignore"), "tmp\n").unwrap();
    std::env::set_current_dir(t.path().join("build")).unwrap();

    let ctx = berth_context::open("../ctx", Some("Dockerfile"), &mut std::io::empty()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM beside-cwd\n", "-f is not relative to the context");
    assert_eq!(ctx.dockerfile_name, "Dockerfile");
    assert_eq!(ctx.root, t.path().join("ctx").canonicalize().unwrap());
    assert!(ctx.ignore.is_ignored("tmp"), "the ignore file beside the Dockerfile applies");

    let ctx = berth_context::open("../ctx", None, &mut std::io::empty()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM in-context\n");
    assert!(!ctx.ignore.is_ignored("tmp"));

    std::env::set_current_dir(t.path().join("ctx")).unwrap();
    let ctx = berth_context::open(".", Some("../build/Dockerfile"), &mut std::io::empty()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM beside-cwd\n");
    assert_eq!(ctx.dockerfile_name, "../build/Dockerfile");
    // As docker: a path that exists is a directory context, even one that
    // reads like a git URL.
    fs::create_dir_all(t.path().join("github.com/user/repo")).unwrap();
    fs::write(t.path().join("github.com/user/repo/Dockerfile"), "FROM local\n").unwrap();
    std::env::set_current_dir(t.path()).unwrap();
    let ctx = berth_context::open("github.com/user/repo", None, &mut std::io::empty()).unwrap();
    assert_eq!(ctx.kind, berth_context::ContextKind::Directory);
    assert_eq!(ctx.dockerfile, "FROM local\n");
    std::env::set_current_dir("/").unwrap();
}
