"""What ``python dead_letters.py`` uses, and the consumer loops do not: reading a topic to its
end outside any group, the listing, and the redrive's selection and republishing."""
