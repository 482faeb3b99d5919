//! Bare metal: which features fit which targets, and a `static` root cancelled from an
//! interrupt handler (issue 7, item 3). (Documentation only.)
