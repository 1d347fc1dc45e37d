//! Compiler command-line classification (owned by the classifier work).
