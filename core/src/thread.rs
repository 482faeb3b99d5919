//! Threads that receive a token and are cancelled and joined when their handle goes (issue 7,
//! item 4).
