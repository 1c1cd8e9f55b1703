//! Loading: which languages have a grammar, and what a missing model says.

use hearken_verbal::{LoadError, ModelFiles, VerbalModel, languages};

#[test]
fn english_is_the_language_with_a_grammar() {
    assert_eq!(languages(), ["en"]);
}

#[test]
fn language_without_grammar_falls_back() {
    let err = VerbalModel::load("de").expect_err("no German grammar");
    assert!(
        matches!(&err, LoadError::NoGrammar { language } if language == "de"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("DTMF"), "{message}");
}

#[test]
fn missing_model_names_its_package() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = ModelFiles::in_dir(dir.path(), "en-US").expect_err("empty dir");
    match &err {
        LoadError::ModelNotInstalled { package, path, .. } => {
            assert_eq!(*package, "pocketsphinx-en-us");
            assert!(path.starts_with(dir.path()), "{path:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("pocketsphinx-en-us"), "{err}");
}

#[test]
fn dictionary_without_a_grammar_word_is_named() {
    let Ok(installed) = ModelFiles::find("en") else {
        eprintln!("SKIPPED: the English model is not installed (pocketsphinx-en-us)");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs pocketsphinx-en-us"
        );
        return;
    };
    drop(installed);
    // The real acoustic model beside a dictionary that lacks "agree".
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(
        "/usr/share/pocketsphinx/model/en-us/en-us",
        dir.path().join("en-us"),
    )
    .expect("symlink");
    std::fs::write(
        dir.path().join("cmudict-en-us.dict"),
        "yes Y EH S\nno N OW\n",
    )
    .expect("write");
    let files = ModelFiles::in_dir(dir.path(), "en").expect("files are present");
    let err = VerbalModel::load_files(&files).expect_err("agree is missing");
    assert!(
        matches!(err, LoadError::WordNotInDictionary { .. }),
        "{err:?}"
    );
}
