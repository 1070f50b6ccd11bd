#compdef embtool

_embtool_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _EMBTOOL_COMPLETE=complete_zsh embtool)
}

compdef _embtool_completion embtool
